"""JSON-RPC over datagrams (jsonrpcs' `dgram_socket`): UDP or a unix datagram socket.

One request per datagram; the reply is sent to the sender's address: at once for a
sync method, from a task once an async one (it reads the database) is done.  This is what
kamcli speaks (its `srvaddr` is a unix datagram path or `udp:IP:PORT`; for unix it
binds its own reply socket first).  Oversized requests and replies are answered with
a short fault instead of being cut, since a cut JSON document helps nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
from collections.abc import Coroutine
from typing import Any, cast

from ..settings import RpcAddress
from .jsonrpc import JsonReply, fault_body, start_json
from .registry import Registry, RpcContext

__all__ = ["MAX_DATAGRAM", "DatagramServer", "start_datagram_server"]

log = logging.getLogger("imc_sidecar.rpc")

# jsonrpcs reads datagrams into a 65,456-byte buffer; a UDP payload cannot exceed 65,507.
MAX_DATAGRAM = 65456
_SOCKET_MODE = 0o660  # jsonrpcs' dgram_mode default


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, registry: Registry, context: RpcContext, name: str) -> None:
        self.registry = registry
        self.context = context
        self.name = name
        self.transport: asyncio.DatagramTransport | None = None
        self.tasks: set[asyncio.Task[None]] = set()  # async methods still running

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's datagram transport is not a DatagramTransport subclass.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.transport is None or not addr:  # an unbound unix client cannot be answered
            return
        if len(data) > MAX_DATAGRAM:
            self._send(fault_body(413, "Request too large"), addr)
            return
        try:
            reply = start_json(data, self.registry, self.context)
        except Exception:  # one bad request must never stop the transport
            log.exception("rpc %s: request from %s failed", self.name, addr)
            self._send(fault_body(-32603, "Internal Error"), addr)
            return
        if isinstance(reply, tuple):
            self._send(reply[2], addr)
            return
        task = asyncio.get_running_loop().create_task(self._finish(reply, addr))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _finish(self, pending: Coroutine[Any, Any, JsonReply], addr: Any) -> None:
        try:
            body = (await pending)[2]
        except Exception:
            log.exception("rpc %s: request from %s failed", self.name, addr)
            body = fault_body(-32603, "Internal Error")
        self._send(body, addr)

    def _send(self, body: bytes | None, addr: Any) -> None:
        if body is None or self.transport is None or self.transport.is_closing():
            return
        if len(body) > MAX_DATAGRAM:
            body = fault_body(500, "Reply too large for a datagram; use HTTP")
        self.transport.sendto(body, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("rpc %s: %s", self.name, exc)  # e.g. ICMP unreachable for a reply


class DatagramServer:
    def __init__(
        self, transport: asyncio.DatagramTransport, protocol: _Protocol, path: str | None
    ) -> None:
        self.transport = transport
        self.protocol = protocol
        self.path = path  # the unix socket file to remove on close

    def close(self) -> None:
        for task in list(self.protocol.tasks):  # nobody is left to send their replies
            task.cancel()
        self.transport.close()
        if self.path is not None:
            with contextlib.suppress(OSError):
                if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                    os.unlink(self.path)


async def start_datagram_server(
    address: RpcAddress, registry: Registry, context: RpcContext
) -> DatagramServer:
    loop = asyncio.get_running_loop()
    protocol = _Protocol(registry, context, str(address))
    if address.kind == "unix":
        sock = _unix_socket(address.path)
        transport, _ = await loop.create_datagram_endpoint(lambda: protocol, sock=sock)
        return DatagramServer(transport, protocol, address.path)
    transport, _ = await loop.create_datagram_endpoint(
        lambda: protocol, local_addr=(address.host, address.port)
    )
    return DatagramServer(transport, protocol, None)


def _unix_socket(path: str) -> socket.socket:
    """Bind a unix datagram socket, replacing a stale socket file (never another file)."""
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise OSError(f"{path} exists and is not a socket")
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(path)
        os.chmod(path, _SOCKET_MODE)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
