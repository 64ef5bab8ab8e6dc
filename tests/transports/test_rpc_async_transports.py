"""Async RPC methods over every real transport: HTTP, datagrams, the FIFO and BINRPC
await them without holding up the others."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from async_methods import REGISTRY, SLOW, SLOW_BODY, VERSION, binrpc_request
from fifo_client import fifo_call
from rpc_support import ROOMS, Context

from imc_sidecar.rpc.binrpc import start_binrpc_server
from imc_sidecar.rpc.binrpc_codec import PacketReader, PacketType, decode_values, to_plain
from imc_sidecar.rpc.datagram import start_datagram_server
from imc_sidecar.rpc.fifo import FifoServer
from imc_sidecar.rpc.http import make_app
from imc_sidecar.settings import RpcAddress


async def test_http_awaits_async_methods_concurrently() -> None:
    client = TestClient(TestServer(make_app(REGISTRY, Context(ROOMS), None)))
    await client.start_server()
    try:
        async def post(data: bytes) -> tuple[float, bytes]:
            response = await client.post("/RPC", data=data)
            body = await response.read()
            return asyncio.get_running_loop().time(), body

        slow, fast = await asyncio.gather(post(SLOW), post(VERSION))
        assert slow[1] == SLOW_BODY
        assert b"imc-sidecar" in fast[1] and fast[0] < slow[0]
    finally:
        await client.close()


async def test_datagrams_reply_to_async_methods_without_blocking_others() -> None:
    server = await start_datagram_server(RpcAddress("udp", "127.0.0.1", 0), REGISTRY,
                                         Context(ROOMS))
    address = server.transport.get_extra_info("sockname")
    loop = asyncio.get_running_loop()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            await loop.sock_sendto(sock, SLOW, address)
            await loop.sock_sendto(sock, VERSION, address)
            async with asyncio.timeout(3):
                first = await loop.sock_recv(sock, 65535)
                second = await loop.sock_recv(sock, 65535)
        assert b'"id":\t2' in first  # the sync method did not wait for the slow one
        assert second == SLOW_BODY
    finally:
        server.close()


async def test_datagram_close_cancels_pending_replies() -> None:
    server = await start_datagram_server(RpcAddress("udp", "127.0.0.1", 0), REGISTRY,
                                         Context(ROOMS))
    address = server.transport.get_extra_info("sockname")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(SLOW, address)
        async with asyncio.timeout(3):  # until the server has taken the request
            while not server.protocol.tasks:
                await asyncio.sleep(0)
        await asyncio.sleep(0)  # one more turn: the task has started its method
        tasks = set(server.protocol.tasks)
        assert len(tasks) == 1
        server.close()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert all(task.cancelled() for task in tasks)


async def test_fifo_awaits_async_methods(tmp_path: Path) -> None:
    server_path = tmp_path / "rpc.fifo"
    server = FifoServer(str(server_path), str(tmp_path), REGISTRY, Context(ROOMS))
    await server.start()
    try:
        request = SLOW[:-1] + b',"reply_name":"reply_1"}'
        assert await fifo_call(server_path, tmp_path, request, "reply_1") == SLOW_BODY
    finally:
        await server.close()


async def _binrpc_replies(reader: asyncio.StreamReader, count: int) -> list[tuple[int, object]]:
    packets = PacketReader()
    out: list[tuple[int, object]] = []
    async with asyncio.timeout(3):
        while len(out) < count:
            packets.feed(await reader.read(65536))
            while (packet := packets.next_packet()) is not None:
                values = [to_plain(v) for v in decode_values(packet.body)]
                kind = "fault" if packet.type is PacketType.FAULT else "reply"
                out.append((packet.cookie, (kind, values)))
    return out


async def test_binrpc_answers_in_request_order_across_async_methods() -> None:
    server = await start_binrpc_server("tcp:127.0.0.1:0", REGISTRY, Context(ROOMS))
    host, port = server.sockets[0].getsockname()[:2]
    try:
        reader, writer = await asyncio.open_connection(host, port)
        # Pipelined: a slow async call, a sync one, an async fault, then more sync.
        writer.write(binrpc_request(1, "test.slow", 0.2) + binrpc_request(2, "core.prints", "x")
                     + binrpc_request(3, "test.fault") + binrpc_request(4, "test.pair"))
        await writer.drain()
        replies = await _binrpc_replies(reader, 4)
        assert replies == [
            (1, ("reply", [{"done": 1, "slept": 0.2}])),
            (2, ("reply", ["x"])),
            (3, ("fault", [404, "Nothing here"])),
            (4, ("reply", ["a", "b"])),
        ]
        writer.write(binrpc_request(5, "test.crash"))  # the connection is still usable
        assert await _binrpc_replies(reader, 1) == [
            (5, ("fault", [500, "internal server error"]))
        ]
        writer.close()
        await writer.wait_closed()
    finally:
        server.close()
        await server.wait_closed()


