"""A registry with async test methods (slow, faulting, crashing, array) beside the real
ones, shared by the unit tests of the RPC core and the transport tests."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from imc_sidecar.rpc.binrpc_codec import encode_request
from imc_sidecar.rpc.methods import build_registry
from imc_sidecar.rpc.registry import (
    Registry,
    RpcContext,
    RpcFault,
    RpcMethod,
    RpcReply,
    RpcStruct,
)


async def slow_method(_context: RpcContext, params: Sequence[object]) -> RpcReply:
    delay = params[0] if params and isinstance(params[0], float) else 0.0
    await asyncio.sleep(delay)
    return RpcReply([RpcStruct(done=True, slept=delay)])


async def _fault(_context: RpcContext, _params: Sequence[object]) -> RpcReply:
    await asyncio.sleep(0)
    raise RpcFault(404, "Nothing here")


async def _crash(_context: RpcContext, _params: Sequence[object]) -> RpcReply:
    await asyncio.sleep(0)
    raise RuntimeError("secret detail")


async def _pair(_context: RpcContext, _params: Sequence[object]) -> RpcReply:
    return RpcReply(["a", "b"])


def _registry() -> Registry:
    registry = build_registry()
    registry.register(RpcMethod("test.slow", slow_method, "", is_async=True))
    registry.register(RpcMethod("test.fault", _fault, "", is_async=True))
    registry.register(RpcMethod("test.crash", _crash, "", is_async=True))
    registry.register(RpcMethod("test.pair", _pair, "", array=True, is_async=True))
    return registry


REGISTRY = _registry()
SLOW = b'{"jsonrpc":"2.0","method":"test.slow","params":[0.3],"id":1}'
VERSION = b'{"jsonrpc":"2.0","method":"core.version","id":2}'
SLOW_BODY = (b'{\n\t"jsonrpc":\t"2.0",\n\t"result":\t{\n\t\t"done":\ttrue,\n'
             b'\t\t"slept":\t0.300000\n\t},\n\t"id":\t1\n}')




def binrpc_request(cookie: int, method: str, *params: int | float | str) -> bytes:
    return encode_request(cookie, method, params)
