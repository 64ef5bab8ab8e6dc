"""Async RPC methods: the registry and the JSON-RPC adapter await them, and the sync
methods answer exactly as before (over real transports: tests/transports)."""

from __future__ import annotations

import pytest
from async_methods import REGISTRY, SLOW, SLOW_BODY, binrpc_request, slow_method
from rpc_support import ROOMS, Context

from imc_sidecar.rpc.binrpc import handle_packet
from imc_sidecar.rpc.binrpc_codec import (
    PacketReader,
    PacketType,
    decode_values,
    to_plain,
)
from imc_sidecar.rpc.jsonrpc import answer_json, handle_json, start_json
from imc_sidecar.rpc.registry import (
    RpcFault,
    RpcMethod,
)

# -- registry ---------------------------------------------------------------------------


async def test_registry_runs_async_methods_only_when_awaited() -> None:
    with pytest.raises(ValueError, match="is_async"):
        RpcMethod("x", slow_method, "")
    context = Context(ROOMS)
    with pytest.raises(TypeError, match="async"):
        REGISTRY.call(context, "test.pair", [])
    reply = await REGISTRY.call_async(context, "test.pair", [])
    assert (reply.values, reply.array) == (["a", "b"], True)
    assert (await REGISTRY.call_async(context, "core.prints", ["x"])).values == ["x"]
    with pytest.raises(RpcFault, match="Nothing here"):
        await REGISTRY.call_async(context, "test.fault", [])


# -- JSON-RPC -----------------------------------------------------------------------------

SYNC_REQUESTS = [
    b'{"jsonrpc":"2.0","method":"imc.list_rooms","id":1}',
    b'{"jsonrpc":"2.0","method":"imc.list_members","params":["sip:chat-1@example.com"]}',
    b'{"jsonrpc":"2.0","method":"imc.list_members","params":[],"id":"x"}',
    b'{"jsonrpc":"2.0","method":"stats.fetchn","params":["imc:"],"id":1e300}',
    b'{"jsonrpc":"2.0","method":"no.such","id":1}',
    b'{"jsonrpc":"1.0","method":"core.version","id":1}',
    b'[{"jsonrpc":"2.0","method":"core.version"}]',
    b"not json",
    b"   ",
]


@pytest.mark.parametrize("text", SYNC_REQUESTS)
async def test_sync_methods_answer_at_once_and_the_same(text: bytes) -> None:
    context = Context(ROOMS)
    now = start_json(text, REGISTRY, context)
    assert isinstance(now, tuple)  # no coroutine: answered in this turn, as before
    assert now == handle_json(text, REGISTRY, context)
    assert now == await answer_json(text, REGISTRY, context)


async def test_async_envelopes_and_faults() -> None:
    context = Context(ROOMS)
    assert await answer_json(SLOW, REGISTRY, context) == (200, "OK", SLOW_BODY)
    status, reason, body = await answer_json(
        b'{"jsonrpc":"2.0","method":"test.pair","id":3}', REGISTRY, context)
    assert body == b'{\n\t"jsonrpc":\t"2.0",\n\t"result":\t["a", "b"],\n\t"id":\t3\n}'
    status, reason, body = await answer_json(
        b'{"jsonrpc":"2.0","method":"test.fault","id":4}', REGISTRY, context)
    assert (status, reason) == (404, "Nothing here")
    assert body is not None and b'"code":\t404' in body
    status, reason, body = await answer_json(
        b'{"jsonrpc":"2.0","method":"test.crash","id":5}', REGISTRY, context)
    assert (status, reason) == (500, "Internal Error")
    assert body is not None and b"-32603" in body and b"secret" not in body
    # The sync entry point cannot wait: a clear fault, no coroutine left behind.
    status, reason, _body = handle_json(SLOW, REGISTRY, context)
    assert (status, reason) == (500, "Method needs an asynchronous transport")


def test_binrpc_sync_entry_point_refuses_async_methods() -> None:
    packets = PacketReader()
    packets.feed(binrpc_request(9, "test.slow"))
    packet = packets.next_packet()
    assert packet is not None
    data, close = handle_packet(packet, REGISTRY, Context(ROOMS))
    packets.feed(data)
    reply = packets.next_packet()
    assert reply is not None and reply.type is PacketType.FAULT and not close
    assert [to_plain(v) for v in decode_values(reply.body)] == [
        500, "method needs an asynchronous transport"
    ]
