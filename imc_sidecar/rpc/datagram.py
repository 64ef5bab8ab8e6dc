"""JSON-RPC over datagrams (jsonrpcs' `dgram_socket`): UDP or a unix datagram socket.

One request per datagram; the reply is sent to the sender's address.  This is what
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
from typing import Any, cast

from ..settings import RpcAddress
from .jsonrpc import fault_body, handle_json
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

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's datagram transport is not a DatagramTransport subclass.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.transport is None or not addr:  # an unbound unix client cannot be answered
            return
        if len(data) > MAX_DATAGRAM:
            body: bytes | None = fault_body(413, "Request too large")
        else:
            try:
                body = handle_json(data, self.registry, self.context)[2]
            except Exception:  # one bad request must never stop the transport
                log.exception("rpc %s: request from %s failed", self.name, addr)
                body = fault_body(-32603, "Internal Error")
        if body is None:
            return
        if len(body) > MAX_DATAGRAM:
            body = fault_body(500, "Reply too large for a datagram; use HTTP")
        self.transport.sendto(body, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("rpc %s: %s", self.name, exc)  # e.g. ICMP unreachable for a reply


class DatagramServer:
    def __init__(self, transport: asyncio.DatagramTransport, path: str | None) -> None:
        self.transport = transport
        self.path = path  # the unix socket file to remove on close

    def close(self) -> None:
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
        return DatagramServer(transport, address.path)
    transport, _ = await loop.create_datagram_endpoint(
        lambda: protocol, local_addr=(address.host, address.port)
    )
    return DatagramServer(transport, None)


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
