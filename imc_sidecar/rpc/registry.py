"""The one registry of admin methods, and the transport-neutral shape of their results.

A method is written once; each transport (HTTP, JSON-RPC datagrams, FIFO, BINRPC) turns
its `RpcReply` into its own wire format.  Values follow Kamailio's RPC model: a method
*adds* values to its reply; a method registered as an array (Kamailio's RET_ARRAY)
returns all of them as one array over JSON-RPC, any other returns only the last one.

A method that reads the database is async (`is_async=True`, a coroutine handler): every
transport awaits it without holding up its other clients.  Kamailio's own methods stay
synchronous, so their replies leave in the same event-loop turn as before.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, Union

if TYPE_CHECKING:
    from ..history.recorder import HistoryRecorder
    from ..imc.engine import ImcEngine
    from ..stats import Statistics

__all__ = [
    "AsyncHandler",
    "Handler",
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
    statistics, when the server started (wall clock, for core.uptime), the usage
    history (None when it is off) and the state of the rooms' database."""

    @property
    def engine(self) -> ImcEngine: ...

    @property
    def stats(self) -> Statistics: ...

    @property
    def started_at(self) -> float: ...

    @property
    def history(self) -> HistoryRecorder | None: ...

    def database_status(self) -> dict[str, int | float | str]:
        """The rooms' database: its URL (no password), whether it answers (1/0), seconds
        in that state, outages so far, the last error."""
        ...


Handler = Callable[[RpcContext, Sequence[object]], RpcReply]
AsyncHandler = Callable[[RpcContext, Sequence[object]], Awaitable[RpcReply]]


@dataclass(frozen=True, slots=True)
class RpcMethod:
    name: str
    handler: Handler | AsyncHandler
    doc: str
    array: bool = False
    is_async: bool = False  # the handler returns an awaitable: transports await it

    def __post_init__(self) -> None:
        # A coroutine handler registered as sync would hand transports a coroutine
        # object as its reply; refuse it where the method is defined.
        if inspect.iscoroutinefunction(self.handler) and not self.is_async:
            raise ValueError(f"RPC method {self.name}: a coroutine handler needs is_async=True")


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

    def start(
        self, context: RpcContext, name: str, params: Sequence[object]
    ) -> RpcReply | Coroutine[Any, Any, RpcReply]:
        """Run a sync method to its reply, or give an async one's coroutine to await.

        Raises RpcFault (MethodNotFound for an unknown name); an async method's faults
        come out of the await.
        """
        method = self._methods.get(name)
        if method is None:
            raise MethodNotFound(name)
        if method.is_async:
            return _run_async(method, context, params)
        reply = method.handler(context, params)
        if not isinstance(reply, RpcReply):
            raise TypeError(f"RPC method {name} returned {type(reply).__name__}, not RpcReply")
        reply.array = method.array
        return reply

    def call(self, context: RpcContext, name: str, params: Sequence[object]) -> RpcReply:
        """Run a sync method; an async one raises TypeError (use `call_async`)."""
        result = self.start(context, name, params)
        if isinstance(result, RpcReply):
            return result
        result.close()  # never started: the handler was not even called
        raise TypeError(f"RPC method {name} is async: call it with call_async")

    async def call_async(
        self, context: RpcContext, name: str, params: Sequence[object]
    ) -> RpcReply:
        """Run any method, sync or async."""
        result = self.start(context, name, params)
        return result if isinstance(result, RpcReply) else await result


async def _run_async(
    method: RpcMethod, context: RpcContext, params: Sequence[object]
) -> RpcReply:
    result = method.handler(context, params)
    reply = result if isinstance(result, RpcReply) else await result
    reply.array = method.array
    return reply
