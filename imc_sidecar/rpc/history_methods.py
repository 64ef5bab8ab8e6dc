"""Our own admin methods for analysts, in the `sidecar.` namespace (never Kamailio's `imc.`).

* `sidecar.rooms`: every room, one struct each (history/snapshot.py: room, name,
  domain, private, members, active, invited, owner).
* `sidecar.members [room]`: one struct per member (room, member, role, pending), of
  every room or of the one named (none for a room that does not exist: a filter).
* `sidecar.events [{...}]`, `sidecar.messages [{...}]`: a page of the usage history.
  The one optional parameter is a struct with any of `since_us`, `until_us` (UTC
  microseconds, since inclusive, until exclusive), `room`, `kind` (events) or `sender`
  (messages), `after` (the cursor: `next` of the previous page) and `limit` (at most
  history.query.MAX_PAGE).  The reply is {"columns": [...], "rows": [[...], ...],
  "next": cursor or null}.  Over JSON-RPC write `"params": [{...}]` (object params
  are taken as positional values); BINRPC carries no struct parameters, so kamcmd
  gets the first page of everything.

The history methods read the database, so they are async.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..history.query import MAX_PAGE, HistoryFilter
from ..history.records import EVENT_KINDS
from ..history.snapshot import member_rows, room_row
from ..store.connect import reason
from .registry import Registry, RpcContext, RpcFault, RpcMethod, RpcReply, RpcStruct

__all__ = ["register_history_methods"]

_BAD_PARAMS = 400  # Kamailio's code for parameters it cannot use
_FILTERS = {"events": "kind", "messages": "sender"}
_BIGINT = 2**63  # the history columns are BIGINT


def register_history_methods(registry: Registry) -> None:
    registry.register(RpcMethod(
        "sidecar.rooms", rooms, "List every room with its member counts and owner.",
        array=True,
    ))
    registry.register(RpcMethod(
        "sidecar.members", members,
        "List the members of every room, or of the room given, with role and pending flag.",
        array=True,
    ))
    registry.register(RpcMethod(
        "sidecar.events", events,
        "A page of usage history events: [{since_us, until_us, room, kind, after, limit}].",
        is_async=True,
    ))
    registry.register(RpcMethod(
        "sidecar.messages", messages,
        "A page of chat message history: [{since_us, until_us, room, sender, after, limit}].",
        is_async=True,
    ))


def rooms(context: RpcContext, params: Sequence[object]) -> RpcReply:
    return RpcReply(values=[RpcStruct(room_row(room)) for room in context.engine.rooms()])


def members(context: RpcContext, params: Sequence[object]) -> RpcReply:
    uri = params[0] if params else None
    if uri is None:
        chosen = list(context.engine.rooms())
    elif isinstance(uri, str):
        room = context.engine.find_room(uri)
        chosen = [room] if room is not None else []
    else:
        raise RpcFault(_BAD_PARAMS, "room must be a SIP URI string")
    return RpcReply(values=[RpcStruct(row) for row in member_rows(chosen)])


async def events(context: RpcContext, params: Sequence[object]) -> RpcReply:
    return await _page(context, "events", params)


async def messages(context: RpcContext, params: Sequence[object]) -> RpcReply:
    return await _page(context, "messages", params)


async def _page(context: RpcContext, which: str, params: Sequence[object]) -> RpcReply:
    if context.history is None:
        raise RpcFault(500, "History is off")
    where, after, limit = parse_page_request(which, params)
    try:
        page = await context.history.writer.page(which, where, after, limit)
    except Exception as exc:
        raise RpcFault(500, f"History database error: {reason(exc)}") from None
    result = RpcStruct(
        columns=list(page.columns), rows=[list(row) for row in page.rows], next=page.next
    )
    return RpcReply(values=[result])


def parse_page_request(
    which: str, params: Sequence[object]
) -> tuple[HistoryFilter, int, int]:
    """The filter, cursor and page size a request asks for; RpcFault when unusable."""
    method = f"sidecar.{which}"
    first = params[0] if params else None
    if first is None:
        struct: dict[str, object] = {}
    elif isinstance(first, dict):
        struct = first
    else:
        raise RpcFault(_BAD_PARAMS, f"{method} takes one struct parameter (or none)")
    text_filter = _FILTERS[which]
    known = ("since_us", "until_us", "room", text_filter, "after", "limit")
    for name in struct:
        if name not in known:
            raise RpcFault(
                _BAD_PARAMS, f"{method}: unknown member '{name}' (use {', '.join(known)})"
            )
    since = _integer(struct, "since_us")
    until = _integer(struct, "until_us")
    after = _integer(struct, "after")
    limit = _integer(struct, "limit")
    if after is not None and after < 0:
        raise RpcFault(_BAD_PARAMS, "after must be a cursor (0 or the `next` of a page)")
    if limit is not None and limit < 1:
        raise RpcFault(_BAD_PARAMS, "limit must be at least 1")
    room = _text(struct, "room")
    chosen = _text(struct, text_filter)
    if text_filter == "kind" and chosen is not None and chosen not in EVENT_KINDS:
        raise RpcFault(_BAD_PARAMS, f"kind must be one of {', '.join(EVENT_KINDS)}")
    where = HistoryFilter(
        since_us=since, until_us=until, room=room,
        kind=chosen if text_filter == "kind" else None,
        sender=chosen if text_filter == "sender" else None,
    )
    return where, after or 0, min(limit or MAX_PAGE, MAX_PAGE)


def _integer(struct: dict[str, object], name: str) -> int | None:
    value = struct.get(name)
    if value is None:
        return None
    # JSON numbers may arrive as floats (clients that print 1e15); whole ones count.
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not -_BIGINT <= value < _BIGINT:
        unit = " (UTC microseconds since the epoch)" if name.endswith("_us") else ""
        raise RpcFault(_BAD_PARAMS, f"{name} must be an integer{unit}")
    return value


def _text(struct: dict[str, object], name: str) -> str | None:
    value = struct.get(name)
    if value is not None and not isinstance(value, str):
        raise RpcFault(_BAD_PARAMS, f"{name} must be a string")
    return value
