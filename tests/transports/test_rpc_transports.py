"""The JSON-RPC transports in-process, over real sockets and FIFOs: HTTP, datagrams
(UDP, unix), FIFO, and all of them together."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from fifo_client import fifo_call
from rpc_support import ROOMS, Context

from imc_sidecar.rpc.datagram import MAX_DATAGRAM, start_datagram_server
from imc_sidecar.rpc.fifo import FifoServer
from imc_sidecar.rpc.http import MAX_BODY, make_app
from imc_sidecar.rpc.methods import build_registry
from imc_sidecar.rpc.server import RpcServers
from imc_sidecar.settings import RpcAddress, Settings

REGISTRY = build_registry()
VERSION = b'{"jsonrpc":"2.0","method":"core.version","id":1}'
TOKEN = "0123456789abcdef0123"


# -- HTTP -----------------------------------------------------------------------------


async def _http(token: str | None = None) -> TestClient:  # type: ignore[type-arg]
    client = TestClient(TestServer(make_app(REGISTRY, Context(ROOMS), token)))
    await client.start_server()
    return client


async def test_http_rpc_and_errors() -> None:
    client = await _http()
    try:
        response = await client.post("/RPC", data=VERSION)
        assert (response.status, response.reason) == (200, "OK")
        assert response.content_type == "application/json"
        assert (await response.read()).startswith(b'{\n\t"jsonrpc":\t"2.0",\n\t"result":\t"imc')
        response = await client.post("/RPC", data=b'{"jsonrpc":"2.0","method":"x","id":1}')
        assert (response.status, response.reason) == (500, "Method Not Found")
        response = await client.post("/RPC", data=b"\x00\xffjunk")
        assert (response.status, response.reason) == (400, "Parse Error")
        response = await client.post("/RPC", data=b"")
        assert response.status == 400
        assert (await client.get("/RPC")).status == 405
        assert (await client.post("/rpc", data=VERSION)).status == 404
        assert (await client.post("/RPC2", data=VERSION)).status == 404
        response = await client.post("/RPC", data=b'{"params":["' + b"x" * MAX_BODY + b'"]}')
        assert response.status == 413
        assert (await client.post("/RPC", data=VERSION)).status == 200  # still serving
    finally:
        await client.close()


async def test_http_bearer_token() -> None:
    client = await _http(TOKEN)
    try:
        response = await client.post("/RPC", data=VERSION)
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        for wrong in ("Bearer nope", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer \u00e9"):
            response = await client.post("/RPC", data=VERSION, headers={"Authorization": wrong})
            assert response.status == 401
        response = await client.post("/RPC", data=VERSION,
                                     headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status == 200
    finally:
        await client.close()


# -- datagrams ------------------------------------------------------------------------


async def _exchange(family: int, server_addr: object, data: bytes,
                    client_addr: object = None) -> bytes | None:
    loop = asyncio.get_running_loop()
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        if client_addr is not None:
            sock.bind(client_addr)
        await loop.sock_sendto(sock, data, server_addr)
        try:
            async with asyncio.timeout(1.0):
                return await loop.sock_recv(sock, 200_000)
        except TimeoutError:
            return None


async def test_udp_datagrams() -> None:
    server = await start_datagram_server(RpcAddress("udp", "127.0.0.1", 0), REGISTRY,
                                         Context(ROOMS))
    address = server.transport.get_extra_info("sockname")
    try:
        reply = await _exchange(socket.AF_INET, address, VERSION)
        assert reply is not None and b'"result":\t"imc-sidecar' in reply
        reply = await _exchange(socket.AF_INET, address, b"\xde\xad\xbe\xef")
        assert reply is not None and b"Parse Error" in reply
        reply = await _exchange(socket.AF_INET, address, b"{" + b" " * MAX_DATAGRAM + b"}")
        assert reply is not None and b"Request too large" in reply
        assert await _exchange(socket.AF_INET, address, b"   ") is None  # nothing to answer
        assert await _exchange(socket.AF_INET, address, VERSION) is not None
    finally:
        server.close()


async def test_unix_datagrams(tmp_path: Path) -> None:
    path = str(tmp_path / "rpc.sock")
    server = await start_datagram_server(RpcAddress("unix", path=path), REGISTRY,
                                         Context(ROOMS))
    try:
        assert oct(os.stat(path).st_mode & 0o777) == "0o660"
        reply = await _exchange(socket.AF_UNIX, path, VERSION, str(tmp_path / "reply.1"))
        assert reply is not None and b'"id":\t1' in reply
        assert await _exchange(socket.AF_UNIX, path, VERSION) is None  # unbound: no address
    finally:
        server.close()
    assert not os.path.exists(path)


async def test_unix_socket_refuses_to_replace_a_file(tmp_path: Path) -> None:
    path = tmp_path / "precious"
    path.write_text("data")
    with pytest.raises(OSError, match="not a socket"):
        await start_datagram_server(RpcAddress("unix", path=str(path)), REGISTRY, Context())
    assert path.read_text() == "data"


# -- FIFO -----------------------------------------------------------------------------


async def test_fifo_round_trip_like_kamctl(tmp_path: Path) -> None:
    server_path = tmp_path / "rpc.fifo"
    server = FifoServer(str(server_path), str(tmp_path), REGISTRY, Context(ROOMS))
    await server.start()
    try:
        assert oct(server_path.stat().st_mode & 0o777) == "0o660"
        request = (b'{"jsonrpc": "2.0", "method": "imc.list_members", '
                   b'"params": ["sip:chat-1@example.com"], '
                   b'"reply_name": "reply_1", "id": 42}\n')
        reply = await fifo_call(server_path, tmp_path, request, "reply_1")
        assert reply.startswith(b'{\n\t"jsonrpc":\t"2.0",\n\t"result":\t{\n')
        assert reply.endswith(b'\n\t"id":\t42\n}')
        # kamctl monitor's multi-line form
        request = (b'{\n  "jsonrpc": "2.0",\n  "method": "core.uptime",\n'
                   b'  "reply_name": "r2",\n  "id": 7\n}\n')
        assert b'"uptime":' in await fifo_call(server_path, tmp_path, request, "r2")
    finally:
        await server.close()
    assert not server_path.exists()


async def test_fifo_refuses_unsafe_reply_names(tmp_path: Path) -> None:
    server_path = tmp_path / "rpc.fifo"
    target = tmp_path / "victim"
    target.write_text("keep")
    server = FifoServer(str(server_path), str(tmp_path), REGISTRY, Context(ROOMS))
    await server.start()
    try:
        fd = os.open(server_path, os.O_WRONLY | os.O_NONBLOCK)
        for name in (b"../victim", b"vic.tim", b"victim", b""):  # victim: not a FIFO
            os.write(fd, b'{"jsonrpc":"2.0","method":"core.version","reply_name":"'
                     + name + b'"}')
        os.write(fd, b"not json at all {}")
        os.close(fd)
        # It still serves, and requests are served in order: once this one is answered,
        # every one before it was handled.
        request = b'{"jsonrpc":"2.0","method":"core.version","reply_name":"ok_1"}'
        assert b'"result"' in await fifo_call(server_path, tmp_path, request, "ok_1")
        assert target.read_text() == "keep"
    finally:
        await server.close()


async def test_fifo_gives_up_on_a_client_that_never_reads(tmp_path: Path) -> None:
    server_path = tmp_path / "rpc.fifo"
    server = FifoServer(str(server_path), str(tmp_path), REGISTRY, Context(ROOMS))
    await server.start()
    try:
        os.mkfifo(tmp_path / "absent")
        fd = os.open(server_path, os.O_WRONLY | os.O_NONBLOCK)
        os.write(fd, b'{"jsonrpc":"2.0","method":"core.version","reply_name":"absent"}')
        os.close(fd)
        request = b'{"jsonrpc":"2.0","method":"core.version","reply_name":"present"}'
        assert b'"result"' in await fifo_call(server_path, tmp_path, request, "present")
    finally:
        await server.close()


# -- all together ---------------------------------------------------------------------


async def test_rpc_servers_start_and_close_everything(tmp_path: Path) -> None:
    settings = Settings(
        rpc_http=(RpcAddress("unix", path=str(tmp_path / "http.sock")),),
        rpc_dgram=(RpcAddress("udp", "127.0.0.1", 0),
                   RpcAddress("unix", path=str(tmp_path / "dgram.sock"))),
        rpc_binrpc=(),
        rpc_fifo=str(tmp_path / "rpc.fifo"),
        rpc_fifo_reply_dir=str(tmp_path),
    )
    servers = RpcServers(settings, REGISTRY, Context(ROOMS))
    await servers.start()
    try:
        for name in ("http.sock", "dgram.sock", "rpc.fifo"):
            assert (tmp_path / name).exists()
        reply = await _exchange(socket.AF_UNIX, str(tmp_path / "dgram.sock"), VERSION,
                                str(tmp_path / "c.1"))
        assert reply is not None
    finally:
        await servers.close()
    for name in ("http.sock", "dgram.sock", "rpc.fifo"):
        assert not (tmp_path / name).exists()


async def test_fifo_drops_an_unfinished_request_when_idle(tmp_path: Path) -> None:
    server_path = tmp_path / "rpc.fifo"
    server = FifoServer(str(server_path), str(tmp_path), REGISTRY, Context(ROOMS),
                        idle_reset=0.05)
    await server.start()
    try:
        fd = os.open(server_path, os.O_WRONLY | os.O_NONBLOCK)
        os.write(fd, b"{" * 5000)  # never closed: would swallow every later request
        os.close(fd)
        async with asyncio.timeout(3):
            while not server.partial:  # read and held ...
                await asyncio.sleep(0.01)
            while server.partial:  # ... then dropped once idle
                await asyncio.sleep(0.01)
        request = b'{"jsonrpc":"2.0","method":"core.version","reply_name":"late_1"}'
        assert b'"result"' in await fifo_call(server_path, tmp_path, request, "late_1")
    finally:
        await server.close()
