"""Start and stop every configured admin RPC transport, all on one method registry."""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Awaitable, Callable
from typing import cast

from ..settings import RpcAddress, Settings
from .datagram import DatagramServer, start_datagram_server
from .fifo import FifoServer
from .http import METRICS_PATH, PATH, HttpServer, start_http_server
from .registry import Registry, RpcContext

__all__ = ["RpcServers"]

log = logging.getLogger("imc_sidecar.rpc")

StartBinrpc = Callable[[str, Registry, RpcContext], Awaitable[asyncio.AbstractServer]]


class RpcServers:
    def __init__(self, settings: Settings, registry: Registry, context: RpcContext) -> None:
        self.settings = settings
        self.registry = registry
        self.context = context
        self._http: list[HttpServer] = []
        self._dgram: list[DatagramServer] = []
        self._binrpc: list[asyncio.AbstractServer] = []
        self._fifo: FifoServer | None = None

    async def start(self) -> None:
        """Bind everything or fail (the caller then calls close())."""
        settings = self.settings
        for address in settings.rpc_http:
            self._http.append(await start_http_server(
                address, self.registry, self.context, settings.rpc_token
            ))
            where = address.path if address.kind == "unix" else f"{_hostport(address)}"
            auth = "bearer token required" if settings.rpc_token else "no token"
            log.info("rpc: JSON-RPC over HTTP serving on http://%s%s, Prometheus on %s (%s)",
                     where, PATH, METRICS_PATH, auth)
        for address in settings.rpc_dgram:
            self._dgram.append(await start_datagram_server(address, self.registry, self.context))
            log.info("rpc: JSON-RPC datagrams serving on %s", address)
        for address in settings.rpc_binrpc:
            start_binrpc = _binrpc_starter()
            if start_binrpc is None:
                log.warning("rpc: BINRPC is not in this build; %s not served", address)
                break
            self._binrpc.append(await start_binrpc(str(address), self.registry, self.context))
            log.info("rpc: BINRPC serving on %s", address)
        if settings.rpc_fifo:
            self._fifo = FifoServer(settings.rpc_fifo, settings.rpc_fifo_reply_dir,
                                    self.registry, self.context)
            await self._fifo.start()
            log.info("rpc: JSON-RPC FIFO serving on %s (replies in %s)", settings.rpc_fifo,
                     settings.rpc_fifo_reply_dir)
        for address in (*settings.rpc_dgram, *settings.rpc_binrpc):
            if not address.loopback:
                log.warning("rpc: %s is not loopback and has no authentication", address)

    async def close(self) -> None:
        for server in self._binrpc:
            server.close()
        for dgram in self._dgram:
            dgram.close()
        for http in self._http:
            await http.close()
        if self._fifo is not None:
            await self._fifo.close()
        for server in self._binrpc:
            await server.wait_closed()
        self._http, self._dgram, self._binrpc, self._fifo = [], [], [], None


def _hostport(address: RpcAddress) -> str:
    host = f"[{address.host}]" if ":" in address.host else address.host
    return f"{host}:{address.port}"


def _binrpc_starter() -> StartBinrpc | None:
    """BINRPC is a separate module; looked up at run time so either can land first."""
    try:
        module = importlib.import_module("imc_sidecar.rpc.binrpc")
    except ImportError:
        return None
    starter = getattr(module, "start_binrpc_server", None)
    return cast(StartBinrpc, starter) if starter is not None else None
