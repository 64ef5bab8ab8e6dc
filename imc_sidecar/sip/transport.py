"""The asyncio edge of the SIP layer: the only code here that touches sockets.

UDP listeners hand each datagram to the sink; TCP listeners frame the byte stream with
`StreamFramer` and hand over complete messages.  Outgoing data goes back over the socket
it belongs to: UDP from our listening socket, TCP over the connection a peer opened, or
a new connection when we are the first to talk (outbound proxy over TCP).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from .endpoint import Peer, Transmit
from .framing import StreamFramer
from .message import ParseError

__all__ = ["Listen", "SipTransports"]

log = logging.getLogger(__name__)

# Called with (data, peer) for every datagram or framed stream message.
Sink = Callable[[bytes, Peer], None]
# Called when data could not be delivered to a peer (connection refused, no route).
ErrorSink = Callable[[Peer], None]

_UDP_BUFFER = 4 * 1024 * 1024


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


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTransports) -> None:
        self._owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self._owner.sink(data, Peer("udp", (str(addr[0]), int(addr[1]))))

    def error_received(self, exc: Exception) -> None:
        # ICMP errors on a shared UDP socket cannot be tied to one peer reliably;
        # the client transaction's Timer F reports the failure instead.
        log.debug("udp error: %s", exc)


class _Tcp(asyncio.Protocol):
    def __init__(self, owner: SipTransports) -> None:
        self._owner = owner
        self._framer = StreamFramer()
        self.transport: asyncio.Transport | None = None
        self.peer: Peer | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        host, port = transport.get_extra_info("peername")[:2]
        self.peer = Peer("tcp", (host, port))
        self._owner.connections[self.peer.address] = self

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None and self.peer is not None
        try:
            messages, pongs = self._framer.feed(data)
        except ParseError as exc:
            log.info("closing tcp %s:%s: %s", *self.peer.address, exc.reason)
            self.transport.close()
            return
        if pongs:
            self.transport.write(b"\r\n" * pongs)
        for message in messages:
            self._owner.sink(message, self.peer)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self._owner.connections.get(self.peer.address) is self:
            del self._owner.connections[self.peer.address]


class SipTransports:
    """Owns every SIP socket; `send()` delivers what the sans-I/O endpoint produced."""

    def __init__(self, sink: Sink, on_error: ErrorSink) -> None:
        self.sink = sink
        self._on_error = on_error
        self._udp: asyncio.DatagramTransport | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._udp_transports: list[asyncio.DatagramTransport] = []
        self.connections: dict[tuple[str, int], _Tcp] = {}
        self._connecting: dict[tuple[str, int], list[bytes]] = {}
        self._resolved: dict[str, str] = {}
        self.bound: list[Listen] = []

    async def start(self, listens: Iterable[ListenAddress]) -> None:
        loop = asyncio.get_running_loop()
        for listen in listens:
            if listen.transport == "udp":
                sock = socket.socket(_family(listen.host), socket.SOCK_DGRAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _UDP_BUFFER)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _UDP_BUFFER)
                sock.bind((listen.host, listen.port))
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _Udp(self), sock=sock
                )
                self._udp_transports.append(transport)
                if self._udp is None:
                    self._udp = transport
                port = transport.get_extra_info("sockname")[1]
            else:
                server = await loop.create_server(
                    lambda: _Tcp(self), listen.host, listen.port, reuse_address=True
                )
                self._servers.append(server)
                port = server.sockets[0].getsockname()[1]
            bound = Listen(listen.transport, listen.host, port)
            self.bound.append(bound)
            log.info("listening on %s", bound)

    def send(self, transmit: Transmit) -> None:
        peer = transmit.peer
        host, port = peer.address
        address = self._resolved.get(host)
        if address is None:
            if _is_ip(host):
                address = host
            else:
                asyncio.get_running_loop().create_task(self._resolve_and_send(transmit))
                return
        if peer.transport == "udp":
            if self._udp is None:
                self._on_error(peer)
                return
            self._udp.sendto(transmit.data, (address, port))
        else:
            self._send_tcp(peer, (address, port), transmit.data)

    def _send_tcp(self, peer: Peer, address: tuple[str, int], data: bytes) -> None:
        conn = self.connections.get(address)
        if conn is not None and conn.transport is not None and not conn.transport.is_closing():
            conn.transport.write(data)
            return
        pending = self._connecting.get(address)
        if pending is not None:
            pending.append(data)
            return
        self._connecting[address] = [data]
        asyncio.get_running_loop().create_task(self._connect(peer, address))

    async def _connect(self, peer: Peer, address: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await loop.create_connection(lambda: _Tcp(self), *address)
        except OSError as exc:
            log.info("tcp connect to %s:%s failed: %s", *address, exc)
            self._connecting.pop(address, None)
            self._on_error(peer)
            return
        # Register the connection under the address we dialled as well, so replies to
        # requests we sent over it and later requests reuse it.
        self.connections[address] = protocol
        assert protocol.transport is not None
        for data in self._connecting.pop(address, []):
            protocol.transport.write(data)

    async def _resolve_and_send(self, transmit: Transmit) -> None:
        host, port = transmit.peer.address
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        except OSError as exc:
            log.info("cannot resolve %s: %s", host, exc)
            self._on_error(transmit.peer)
            return
        self._resolved[host] = str(infos[0][4][0])
        self.send(transmit)

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for conn in list(self.connections.values()):
            if conn.transport is not None:
                conn.transport.close()
        for server in self._servers:
            await server.wait_closed()
        for transport in self._udp_transports:
            transport.close()


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
