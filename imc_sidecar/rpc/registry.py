"""The one registry of admin methods, and the transport-neutral shape of their results.

A method is written once; each transport (HTTP, JSON-RPC datagrams, FIFO, BINRPC) turns
its `RpcReply` into its own wire format.  Values follow Kamailio's RPC model: a method
*adds* values to its reply; a method registered as an array (Kamailio's RET_ARRAY)
returns all of them as one array over JSON-RPC, any other returns only the last one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, Union

if TYPE_CHECKING:
    from ..imc.engine import ImcEngine
    from ..stats import Statistics

__all__ = [
    "MethodNotFound",
    "Registry",
    "RpcContext",
    "RpcFault",
    "RpcMethod",
    "RpcReply",
    "RpcStruct",
    "RpcValue",
]

RpcValue = Union[int, float, str, bool, None, "RpcStruct", list["RpcValue"]]


class RpcStruct(dict[str, RpcValue]):
    """An RPC struct: members in insertion order.

    `one_call` marks a struct Kamailio fills with a single `struct_add` call; ctl's
    BINRPC encoder stops at the first nested container of such a call, so members
    after it never reach kamcmd (why `imc.list_members` shows no `count` there).
    """

    one_call: bool = False


class RpcFault(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message


class MethodNotFound(RpcFault):
    """Each transport words this one itself (JSON-RPC and BINRPC differ)."""

    def __init__(self, name: str) -> None:
        super().__init__(500, "Method Not Found")
        self.name = name


@dataclass(slots=True)
class RpcReply:
    values: list[RpcValue] = field(default_factory=list)
    array: bool = False

    def add(self, value: RpcValue) -> None:
        self.values.append(value)


class RpcContext(Protocol):
    """What methods may read: the live engine (it is replaced after a reload), the
    statistics, and when the server started (wall clock, for core.uptime)."""

    @property
    def engine(self) -> ImcEngine: ...

    @property
    def stats(self) -> Statistics: ...

    @property
    def started_at(self) -> float: ...


Handler = Callable[[RpcContext, Sequence[object]], RpcReply]


@dataclass(frozen=True, slots=True)
class RpcMethod:
    name: str
    handler: Handler
    doc: str
    array: bool = False


class Registry:
    def __init__(self) -> None:
        self._methods: dict[str, RpcMethod] = {}

    def register(self, method: RpcMethod) -> None:
        if method.name in self._methods:
            raise ValueError(f"RPC method {method.name} registered twice")
        self._methods[method.name] = method

    def names(self) -> list[str]:
        return list(self._methods)

    def get(self, name: str) -> RpcMethod | None:
        return self._methods.get(name)

    def call(self, context: RpcContext, name: str, params: Sequence[object]) -> RpcReply:
        """Run a method; raises RpcFault (MethodNotFound for an unknown name)."""
        method = self._methods.get(name)
        if method is None:
            raise MethodNotFound(name)
        reply = method.handler(context, params)
        reply.array = method.array
        return reply
