"""The BINRPC listener: Kamailio's `ctl` module for kamcmd, over TCP or a unix stream socket.

Like ctl, a connection carries any number of requests back to back (kamcmd's interactive
mode keeps one open) and each reply echoes its request's cookie.  A packet whose header or
method name cannot be parsed gets a 400 "bad request…" fault when its cookie could be
read, then the connection is closed; bad parameters, an unknown method or a method's
fault leave the connection usable.  An async method's reply is awaited before the
connection's next request is read, so replies keep the order of the requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, cast

from ..policy.connections import ConnectionLimits
from .binrpc_codec import (
    BinrpcError,
    Packet,
    PacketReader,
    PacketType,
    decode_method,
    decode_params,
    encode_fault,
    encode_reply,
)
from .registry import MethodNotFound, Registry, RpcContext, RpcFault, RpcReply

__all__ = [
    "BinrpcAddress",
    "handle_packet",
    "parse_binrpc_address",
    "start_binrpc_server",
    "start_packet",
]

log = logging.getLogger("imc_sidecar.rpc.binrpc")

IDLE_TIMEOUT = 120.0  # ctl's IO_STREAM_CONN_TIMEOUT
MAX_CONNECTIONS = 128  # concurrent clients; more are closed at once
MAX_REPLY_BODY = 16 * 1024 * 1024  # kamcmd itself stops at 128 KiB; our client reads more


@dataclass(frozen=True, slots=True)
class BinrpcAddress:
    """`tcp:HOST:PORT` or `unix:/path` (kamcmd's `unixs:` and a bare path work too)."""

    kind: str  # "tcp" | "unix"
    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp:{host}:{self.port}"


def parse_binrpc_address(address: str) -> BinrpcAddress:
    proto, sep, rest = address.partition(":")
    if not sep:
        if "/" in address:
            return BinrpcAddress("unix", path=address)
        raise ValueError(f"BINRPC address {address!r}: expected tcp:HOST:PORT or unix:/path")
    proto = proto.lower()
    if proto in ("unix", "unixs"):
        if not rest:
            raise ValueError(f"BINRPC address {address!r}: empty socket path")
        return BinrpcAddress("unix", path=rest)
    if proto != "tcp":
        raise ValueError(f"BINRPC address {address!r}: use tcp:HOST:PORT or unix:/path")
    host, sep, port_text = rest.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"BINRPC address {address!r}: expected tcp:HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"BINRPC address {address!r}: write IPv6 hosts as [addr]")
    return BinrpcAddress("tcp", host="0.0.0.0" if host == "*" else host, port=int(port_text))


Answer = tuple[bytes, bool]  # the bytes to send, and whether the connection must close


def start_packet(
    packet: Packet, registry: Registry, context: RpcContext
) -> Answer | Coroutine[Any, Any, Answer]:
    """The answer to one packet, or for an async method a coroutine giving it."""
    cookie = packet.cookie
    if packet.type is not PacketType.REQUEST:
        return encode_fault(cookie, 400, "bad request: corrupted packet"), True
    try:
        method, start = decode_method(packet.body)
    except BinrpcError as exc:  # ctl closes the connection after these
        return encode_fault(cookie, 400, exc.fault_text), True
    found = registry.get(method)
    if found is None:  # ctl looks the name up before any parameter
        return encode_fault(cookie, 500, f"command {method} not found"), False
    try:
        params = decode_params(packet.body, start)
    except BinrpcError as exc:  # the packet's bounds are sound: the connection can go on
        return encode_fault(cookie, 400, exc.fault_text), False
    if found.is_async:
        return _finish(cookie, method, registry, context, params)
    try:
        reply = registry.call(context, method, params)
    except Exception as exc:
        return _failed(cookie, method, exc)
    return _encoded(cookie, method, reply)


def handle_packet(packet: Packet, registry: Registry, context: RpcContext) -> Answer:
    """The answer to one packet without waiting; an async method gets a fault."""
    answer = start_packet(packet, registry, context)
    if isinstance(answer, tuple):
        return answer
    answer.close()
    return encode_fault(packet.cookie, 500, "method needs an asynchronous transport"), False


async def _finish(
    cookie: int, method: str, registry: Registry, context: RpcContext, params: Sequence[object]
) -> Answer:
    try:
        reply = await registry.call_async(context, method, params)
    except Exception as exc:
        return _failed(cookie, method, exc)
    return _encoded(cookie, method, reply)


def _failed(cookie: int, method: str, exc: Exception) -> Answer:
    if isinstance(exc, MethodNotFound):
        return encode_fault(cookie, 500, f"command {method} not found"), False
    if isinstance(exc, RpcFault):
        return encode_fault(cookie, exc.code, exc.message), False
    # a method's bug must not take the listener down
    log.error("BINRPC method %s failed", method, exc_info=exc)
    return encode_fault(cookie, 500, "internal server error"), False


def _encoded(cookie: int, method: str, reply: RpcReply) -> Answer:
    try:
        data = encode_reply(cookie, reply.values)
    except (TypeError, ValueError):
        log.exception("BINRPC method %s returned a value BINRPC cannot carry", method)
        return encode_fault(cookie, 500, "internal server error"), False
    if len(data) > MAX_REPLY_BODY:
        return encode_fault(cookie, 500, "internal server error: reply too big"), False
    return data, False


class _Listener:
    """What every connection of one listening socket shares."""

    def __init__(self, registry: Registry, context: RpcContext, name: str) -> None:
        self.registry = registry
        self.context = context
        self.name = name
        self.connections = 0


class _Connection(asyncio.Protocol):
    def __init__(self, listener: _Listener) -> None:
        self._listener = listener
        self._reader = PacketReader()
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._paused = False
        self._counted = False
        self._busy: asyncio.Task[None] | None = None  # an async method's answer pending

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's stream transports are not asyncio.Transport subclasses.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        # The one connection-count rule, shared with SIP over TCP (read at each
        # connection: tests lower MAX_CONNECTIONS).
        refusal = ConnectionLimits(max_total=MAX_CONNECTIONS).refusal(self._listener.connections)
        if refusal is not None:
            log.warning("%s: %s, closing a new BINRPC one", self._listener.name, refusal)
            transport.abort()
            return
        self._listener.connections += 1
        self._counted = True
        self._touch()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._counted:
            self._listener.connections -= 1
            self._counted = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._busy is not None:
            self._busy.cancel()
            self._busy = None
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        self._touch()
        self._process()

    def eof_received(self) -> bool:
        return False  # a half-closed client gets no more replies: close

    def pause_writing(self) -> None:
        # asyncio calls this from write() when a client does not read its replies:
        # stop reading (and answering) until the buffer drains.
        self._paused = True
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._paused = False
        if (
            self._transport is not None and not self._transport.is_closing()
            and self._busy is None
        ):
            self._transport.resume_reading()
            self._process()

    def _touch(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(IDLE_TIMEOUT, self._idle)

    def _idle(self) -> None:
        self._timer = None
        if self._transport is not None:
            log.debug("%s: closing an idle BINRPC connection", self._listener.name)
            self._transport.close()

    def _process(self) -> None:
        transport = self._transport
        while (
            transport is not None and not transport.is_closing() and not self._paused
            and self._busy is None
        ):
            try:
                packet = self._reader.next_packet()
            except BinrpcError as exc:
                log.info("%s: bad BINRPC packet (%s)", self._listener.name, exc)
                if exc.cookie is not None:
                    transport.write(encode_fault(exc.cookie, 400, exc.fault_text))
                transport.close()
                return
            if packet is None:
                return
            answer = start_packet(packet, self._listener.registry, self._listener.context)
            if not isinstance(answer, tuple):
                # Read nothing more until this reply is out: replies stay in order and
                # a client cannot pile up requests meanwhile.
                transport.pause_reading()
                self._busy = asyncio.get_running_loop().create_task(self._await(answer))
                return
            self._send(transport, answer)

    async def _await(self, pending: Coroutine[Any, Any, Answer]) -> None:
        answer = await pending
        self._busy = None
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        self._send(transport, answer)
        if not self._paused and not transport.is_closing():
            transport.resume_reading()
            self._process()

    @staticmethod
    def _send(transport: asyncio.Transport, answer: Answer) -> None:
        data, close = answer
        transport.write(data)
        if close:
            transport.close()


class _UnixServer(asyncio.AbstractServer):
    """asyncio's unix server, plus removing the socket file on close (3.11 leaves it)."""

    def __init__(self, server: asyncio.Server, path: str) -> None:
        self._server = server
        self._path = path

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return tuple(self._server.sockets)

    def close(self) -> None:
        if self._server.is_serving():
            with contextlib.suppress(OSError):
                os.unlink(self._path)
        self._server.close()

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._server.get_loop()

    def is_serving(self) -> bool:
        return self._server.is_serving()

    async def start_serving(self) -> None:
        await self._server.start_serving()

    async def serve_forever(self) -> None:
        await self._server.serve_forever()

    async def wait_closed(self) -> None:
        await self._server.wait_closed()


def _check_stale_socket(path: str) -> None:
    """asyncio would delete any socket file at `path`; refuse when someone still serves it."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        return  # stale: nobody listens, asyncio may replace it
    finally:
        probe.close()
    raise OSError(f"another process is serving {path}")


async def start_binrpc_server(
    address: str, registry: Registry, context: RpcContext
) -> asyncio.AbstractServer:
    """Listen for kamcmd on `tcp:HOST:PORT` or `unix:/path`; the server is serving."""
    where = parse_binrpc_address(address)
    loop = asyncio.get_running_loop()
    listener = _Listener(registry, context, str(where))
    if where.kind == "unix":
        _check_stale_socket(where.path)
        server = await loop.create_unix_server(lambda: _Connection(listener), where.path)
        os.chmod(where.path, 0o660)  # jsonrpcs' dgram_mode/fifo_mode default
        log.info("BINRPC (kamcmd) on %s", where)
        return _UnixServer(server, where.path)
    server = await loop.create_server(lambda: _Connection(listener), where.host, where.port)
    bound = server.sockets[0].getsockname()
    listener.name = str(BinrpcAddress("tcp", host=bound[0], port=bound[1]))
    log.info("BINRPC (kamcmd) on %s", listener.name)
    return server
