"""The asyncio edge of the SIP layer: the only code here that touches sockets.

UDP listeners hand each datagram to the sink; TCP listeners frame the byte stream with
`StreamFramer` and hand over complete messages.  Outgoing data goes back over the socket
it belongs to: UDP from our listening socket, TCP over the connection a peer opened, or
a new connection when we are the first to talk (outbound proxy over TCP).

TCP connections are held to `ConnectionLimits` (policy/connections.py): how many peers
may open, how long one may stay without progress, how much we hold for a peer that does
not read.  UDP is not touched by any of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import struct
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, cast

from ..policy.connections import ConnectionCounts, ConnectionLimits, ConnectionTable
from .endpoint import Peer, Transmit
from .framing import StreamFramer
from .message import ParseError

__all__ = ["Listen", "SipTransports"]

log = logging.getLogger(__name__)

# Called with (data, peer) for every datagram or framed stream message.
Sink = Callable[[bytes, Peer], None]
# Called when data could not be delivered to a peer (connection refused, no route).
ErrorSink = Callable[[Peer], None]
# Called after a run of sink() calls: the time to send what they produced.
BatchSink = Callable[[], None]

_UDP_BUFFER = 4 * 1024 * 1024
_MAX_DATAGRAM = 65535
_READ_BATCH = 256  # datagrams read per wake-up at most, so other work is not starved
_PEER_CACHE_MAX = 65536
_RESOLVED_MAX = 4096
# Connections the kernel completes before we accept them: a burst of peers (a proxy
# restarting, phones re-registering) must not be dropped at the door.
_TCP_BACKLOG = 1024
_LOG_EVERY = 10.0  # seconds between two warnings about refused TCP connections
# SO_LINGER on, 0 s: close() resets the connection and drops what the kernel still holds.
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)


@dataclass(frozen=True, slots=True)
class Listen:
    transport: str  # "udp" or "tcp"
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.transport}:{self.host}:{self.port}"


class ListenAddress(Protocol):
    @property
    def transport(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...


class _Udp:
    """One UDP socket, read and written directly (no asyncio transport in between).

    Each wake-up reads every datagram waiting (up to `_READ_BATCH`) before handing
    control back, and the owner flushes once per batch: under load one trip through the
    event loop carries hundreds of messages instead of one.  Sends go straight to the
    socket; when its buffer is full they wait in order in a queue drained when it is
    writable again.
    """

    def __init__(self, owner: SipTransports, sock: socket.socket) -> None:
        self._owner = owner
        self.sock = sock
        self._loop = asyncio.get_running_loop()
        self._fd = sock.fileno()
        self._queue: deque[tuple[bytes, tuple[str, int], Peer]] = deque()
        self.queued_bytes = 0
        self._peers: dict[object, Peer] = {}
        sock.setblocking(False)
        self._loop.add_reader(self._fd, self._read_ready)

    def _read_ready(self) -> None:
        recvfrom = self.sock.recvfrom
        sink = self._owner.sink
        peers = self._peers
        try:
            for _ in range(_READ_BATCH):
                try:
                    data, addr = recvfrom(_MAX_DATAGRAM)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:
                    # ICMP errors on a shared UDP socket cannot be tied to one peer
                    # reliably; the client transaction's Timer F reports the failure.
                    log.debug("udp error: %s", exc)
                    break
                peer = peers.get(addr)
                if peer is None:
                    if len(peers) >= _PEER_CACHE_MAX:
                        peers.clear()
                    peer = peers[addr] = Peer("udp", (str(addr[0]), int(addr[1])))
                sink(data, peer)
        finally:
            self._owner.batch_done()

    def sendto(self, data: bytes, address: tuple[str, int], peer: Peer) -> None:
        if not self._queue:
            try:
                self.sock.sendto(data, address)
                return
            except (BlockingIOError, InterruptedError):
                self._loop.add_writer(self._fd, self._write_ready)
            except OSError as exc:
                log.info("udp send to %s:%s failed: %s", *address, exc)
                self._owner.report_error(peer)
                return
        self._queue.append((data, address, peer))
        self.queued_bytes += len(data)

    def _write_ready(self) -> None:
        queue = self._queue
        while queue:
            data, address, peer = queue[0]
            try:
                self.sock.sendto(data, address)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.info("udp send to %s:%s failed: %s", *address, exc)
                self._owner.report_error(peer)
            queue.popleft()
            self.queued_bytes -= len(data)
        self._loop.remove_writer(self._fd)

    def close(self) -> None:
        self._loop.remove_reader(self._fd)
        if self._queue:
            self._loop.remove_writer(self._fd)
        self.sock.close()


class _Tcp(asyncio.Protocol):
    """One SIP TCP connection, a peer's (`inbound`) or one we opened, framed by
    `StreamFramer`; the owner applies the connection limits."""

    def __init__(self, owner: SipTransports, inbound: bool) -> None:
        self._owner = owner
        self._inbound = inbound
        self._framer = StreamFramer()
        self.transport: asyncio.Transport | None = None
        self.peer: Peer | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's stream transports are not asyncio.Transport subclasses.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        host, port = transport.get_extra_info("peername")[:2]
        self.peer = Peer("tcp", (host, port))
        if not self._owner.tcp_opened(self, self._inbound):
            self.reset()
            return
        self._owner.connections[self.peer.address] = self

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None and self.peer is not None
        try:
            messages, pongs = self._framer.feed(data)
        except ParseError as exc:
            log.info("closing tcp %s:%s: %s", *self.peer.address, exc.reason)
            self._owner.tcp.malformed(self)
            self.shut()
            return
        if messages or pongs:
            self._owner.tcp_progress(self)
        if pongs and not self.write(b"\r\n" * pongs):
            return
        transport = self.transport
        for message in messages:
            if transport.is_closing():
                break  # closed for what an earlier one made us hold: no answer could leave
            self._owner.sink(message, self.peer)
        if messages:
            self._owner.batch_done()

    def write(self, data: bytes) -> bool:
        """Send `data`; False when the peer left too much unsent and the connection was
        closed for it."""
        assert self.transport is not None
        self.transport.write(data)
        return self._owner.tcp_written(self)

    def shut(self) -> None:
        """Close; reset when there is still data the peer did not take (a peer that does
        not read would otherwise hold the connection open forever)."""
        transport = self.transport
        if transport is None:
            return
        if transport.get_write_buffer_size():
            self.reset()
        else:
            transport.close()

    def reset(self) -> None:
        """Close at once, dropping what is unsent here and in the kernel: a plain close
        leaves an orphan socket holding megabytes for a peer that does not read."""
        transport = self.transport
        if transport is None:
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
        transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner.tcp.removed(self)
        if self.peer is not None and self._owner.connections.get(self.peer.address) is self:
            del self._owner.connections[self.peer.address]


@dataclass(slots=True)
class _Dialling:
    """Data for a connection we are still opening; `overflowed`: more than the write
    bound came meanwhile, and what comes until it is open fails at once."""

    data: list[bytes]
    size: int
    overflowed: bool = False


class SipTransports:
    """Owns every SIP socket; `send()` delivers what the sans-I/O endpoint produced."""

    def __init__(
        self,
        sink: Sink,
        on_error: ErrorSink,
        batch_done: BatchSink | None = None,
        *,
        tcp_limits: ConnectionLimits | None = None,
        tcp_counts: ConnectionCounts | None = None,
    ) -> None:
        """`tcp_limits`: what TCP peers may make us hold (default: no limit);
        `tcp_counts`: where to count what the limits did (the owner's statistics)."""
        self.sink = sink
        self._on_error = on_error
        self.batch_done: BatchSink = batch_done or _nothing
        self._udp: _Udp | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._udp_sockets: list[_Udp] = []
        self.connections: dict[tuple[str, int], _Tcp] = {}
        self._connecting: dict[tuple[str, int], _Dialling] = {}
        self.tcp: ConnectionTable[_Tcp] = ConnectionTable(
            tcp_limits or ConnectionLimits(), tcp_counts
        )
        self._idle_timer: asyncio.TimerHandle | None = None
        self._refusal_logged_at = -_LOG_EVERY
        self._resolved: dict[str, str] = {}
        # UDP peers whose host is an IP address: where to send, ready for sendto().
        self._direct: dict[Peer, tuple[str, int]] = {}
        self.bound: list[Listen] = []

    async def start(self, listens: Iterable[ListenAddress], *, announce: bool = True) -> None:
        """Open every socket; `announce` logs "listening on" for each (a delivery worker's
        socket only sends, and its owner says so)."""
        loop = asyncio.get_running_loop()
        for listen in listens:
            if listen.transport == "udp":
                sock = socket.socket(_family(listen.host), socket.SOCK_DGRAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _UDP_BUFFER)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _UDP_BUFFER)
                sock.bind((listen.host, listen.port))
                udp = _Udp(self, sock)
                self._udp_sockets.append(udp)
                if self._udp is None:
                    self._udp = udp
                port = sock.getsockname()[1]
            else:
                server = await loop.create_server(
                    lambda: _Tcp(self, inbound=True), listen.host, listen.port,
                    reuse_address=True, backlog=_TCP_BACKLOG,
                )
                self._servers.append(server)
                port = server.sockets[0].getsockname()[1]
            bound = Listen(listen.transport, listen.host, port)
            self.bound.append(bound)
            if announce:
                log.info("listening on %s", bound)

    @property
    def queued_bytes(self) -> int:
        """Bytes waiting for a full UDP send buffer to drain."""
        return sum(udp.queued_bytes for udp in self._udp_sockets)

    def report_error(self, peer: Peer) -> None:
        """Tell the owner, from a fresh call stack, that `peer` cannot be reached."""
        asyncio.get_running_loop().call_soon(self._on_error, peer)

    def send_all(self, transmits: list[Transmit]) -> None:
        """`send` each in order; UDP to a known address goes straight to the socket."""
        udp = self._udp
        direct = self._direct
        if udp is None:
            for transmit in transmits:
                self.send(transmit)
            return
        sendto = udp.sock.sendto
        slow = False
        for transmit in transmits:
            if not slow:
                address = direct.get(transmit.peer)
                if address is not None and not udp.queued_bytes:
                    try:
                        sendto(transmit.data, address)
                        continue
                    except (BlockingIOError, InterruptedError):
                        slow = True  # the socket is full: queue from here on, in order
                    except OSError:
                        pass  # send() logs and reports it
            self.send(transmit)

    def send(self, transmit: Transmit) -> None:
        peer = transmit.peer
        host, port = peer.address
        address = self._resolved.get(host)
        if address is None:
            if not _is_ip(host):
                asyncio.get_running_loop().create_task(self._resolve_and_send(transmit))
                return
            address = host
            self._remember(host, host)
        if peer.transport == "udp":
            if self._udp is None:
                self._on_error(peer)
                return
            if address == host:
                if len(self._direct) >= _RESOLVED_MAX:
                    self._direct.clear()
                self._direct[peer] = (address, port)
            self._udp.sendto(transmit.data, (address, port), peer)
        else:
            self._send_tcp(peer, (address, port), transmit.data)

    def _send_tcp(self, peer: Peer, address: tuple[str, int], data: bytes) -> None:
        conn = self.connections.get(address)
        if conn is not None and conn.transport is not None and not conn.transport.is_closing():
            if not conn.write(data):
                self.report_error(peer)
            return
        dialling = self._connecting.get(address)
        if dialling is None:
            self._connecting[address] = _Dialling([data], len(data))
            asyncio.get_running_loop().create_task(self._connect(peer, address))
            return
        if dialling.overflowed:
            self.report_error(peer)
            return
        dialling.data.append(data)
        dialling.size += len(data)
        if self.tcp.overflowing(None, dialling.size):
            log.warning(
                "tcp %s:%s: %d bytes waiting for the connection to open, over "
                "sip_tcp_max_buffer: dropped", *address, dialling.size,
            )
            dialling.data.clear()
            dialling.size = 0
            dialling.overflowed = True
            self.report_error(peer)

    async def _connect(self, peer: Peer, address: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await loop.create_connection(
                lambda: _Tcp(self, inbound=False), *address
            )
        except OSError as exc:
            log.info("tcp connect to %s:%s failed: %s", *address, exc)
            self._connecting.pop(address, None)
            self._on_error(peer)
            return
        # Register the connection under the address we dialled as well, so replies to
        # requests we sent over it and later requests reuse it.
        self.connections[address] = protocol
        dialling = self._connecting.pop(address, None)
        for data in [] if dialling is None else dialling.data:
            if not protocol.write(data):
                self._on_error(peer)
                return

    # -- TCP connection limits: the connections call these (and `tcp` itself) -----------

    def tcp_opened(self, conn: _Tcp, inbound: bool) -> bool:
        """A connection is open; False: refused (the caller closes it at once)."""
        assert conn.peer is not None
        now = self._now()
        if not inbound:
            self.tcp.track(conn, now)
        else:
            host = conn.peer.address[0]
            refusal = self.tcp.admit(conn, host, now)
            if refusal is not None:
                if now - self._refusal_logged_at >= _LOG_EVERY:
                    self._refusal_logged_at = now
                    log.warning(
                        "refusing tcp connections: %s (%s, %d open); %d refused since start",
                        refusal, host, self.tcp.inbound, self.tcp.counts.refused,
                    )
                return False
        if self._idle_timer is None:
            self._arm_idle_timer()
        return True

    def tcp_progress(self, conn: _Tcp) -> None:
        self.tcp.active(conn, self._now())

    def tcp_written(self, conn: _Tcp) -> bool:
        """After a write: False if the peer leaves more unsent than the limit allows, and
        the connection was closed for it (what was sent to it fails)."""
        assert conn.transport is not None and conn.peer is not None
        unsent = conn.transport.get_write_buffer_size()
        if self.tcp.overflowing(conn, unsent):
            log.warning(
                "closing tcp %s:%s: %d bytes it did not read, over sip_tcp_max_buffer",
                *conn.peer.address, unsent,
            )
            conn.reset()
            return False
        self.tcp.active(conn, self._now())
        return True

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _arm_idle_timer(self) -> None:
        deadline = self.tcp.next_idle()
        if deadline is not None:
            self._idle_timer = asyncio.get_running_loop().call_at(deadline, self._close_idle)

    def _close_idle(self) -> None:
        self._idle_timer = None
        idle = self.tcp.idle(self._now())
        for conn in idle:
            conn.shut()
        if idle:
            log.debug(
                "closed %d tcp connection(s) idle for %g s", len(idle), self.tcp.limits.idle_timeout
            )
        self._arm_idle_timer()

    async def _resolve_and_send(self, transmit: Transmit) -> None:
        host, port = transmit.peer.address
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        except OSError as exc:
            log.info("cannot resolve %s: %s", host, exc)
            self._on_error(transmit.peer)
            return
        self._remember(host, str(infos[0][4][0]))
        self.send(transmit)

    def _remember(self, host: str, address: str) -> None:
        if len(self._resolved) >= _RESOLVED_MAX:
            self._resolved.clear()
        self._resolved[host] = address

    async def close(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        for server in self._servers:
            server.close()
        for conn in list(self.connections.values()):
            if conn.transport is not None:
                conn.transport.close()
        for server in self._servers:
            await server.wait_closed()
        for udp in self._udp_sockets:
            udp.close()
        self._udp_sockets.clear()
        self._udp = None


def _nothing() -> None:
    pass


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
