"""JSON-RPC over HTTP: `POST /RPC`, the path Kamailio's stock config routes to jsonrpcs;
and `GET /metrics`, the statistics for Prometheus (rpc/prometheus.py).

Only POST on exactly `/RPC` reaches the adapter; another method there is 405, any
other path 404, a body over the cap 413.  With `rpc_token` set, every request to either
path must carry `Authorization: Bearer <token>` (401 otherwise).  Replies carry
Kamailio's status and reason phrase: 200 OK, or the fault code and text.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import stat

from aiohttp import web

from ..settings import RpcAddress
from .jsonrpc import answer_json
from .prometheus import CONTENT_TYPE, Exposition
from .registry import Registry, RpcContext

__all__ = ["MAX_BODY", "METRICS_PATH", "PATH", "HttpServer", "make_app", "start_http_server"]

log = logging.getLogger("imc_sidecar.rpc")

PATH = "/RPC"
METRICS_PATH = "/metrics"
MAX_BODY = 65535  # Kamailio reads HTTP over its SIP TCP buffer (BUF_SIZE)
_JSON = "application/json"


def make_app(registry: Registry, context: RpcContext, token: str | None) -> web.Application:
    expected = f"Bearer {token}".encode() if token else None
    exposition = Exposition(lambda: context.stats)

    def refused(request: web.Request) -> web.Response | None:
        """401 unless the request carries the token (when one is set)."""
        if expected is None:
            return None
        given = request.headers.get("Authorization", "").encode("utf-8", "replace")
        if hmac.compare_digest(given, expected):
            return None
        return web.Response(status=401, text="bearer token required\n",
                            headers={"WWW-Authenticate": 'Bearer realm="imc-sidecar"'})

    async def rpc(request: web.Request) -> web.StreamResponse:
        if (refusal := refused(request)) is not None:
            return refusal
        body = await request.read()
        status, reason, reply = await answer_json(body, registry, context)
        if reply is None:
            return web.Response(status=status, reason=reason, text="empty request\n")
        return web.Response(status=status, reason=reason, body=reply, content_type=_JSON)

    async def metrics(request: web.Request) -> web.StreamResponse:
        if (refusal := refused(request)) is not None:
            return refusal
        return web.Response(body=exposition.render(), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post(PATH, rpc)
    app.router.add_get(METRICS_PATH, metrics)
    return app


class HttpServer:
    def __init__(self, runner: web.AppRunner, path: str | None) -> None:
        self.runner = runner
        self.path = path  # a unix socket file to remove on close

    async def close(self) -> None:
        await self.runner.cleanup()
        if self.path is not None:
            _remove_socket(self.path)


def _remove_socket(path: str) -> None:
    """Remove a socket file left by an earlier run; refuse to touch any other file."""
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise OSError(f"{path} exists and is not a socket")
        os.unlink(path)


async def start_http_server(
    address: RpcAddress, registry: Registry, context: RpcContext, token: str | None
) -> HttpServer:
    runner = web.AppRunner(make_app(registry, context, token), access_log=None,
                           handle_signals=False)
    await runner.setup()
    try:
        site: web.BaseSite
        if address.kind == "unix":
            _remove_socket(address.path)
            site = web.UnixSite(runner, address.path)
        else:
            site = web.TCPSite(runner, address.host, address.port, reuse_address=True)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return HttpServer(runner, address.path if address.kind == "unix" else None)
