"""The columns and dtypes of every frame the client returns: the one place they are defined.

Plain data (dtype names as strings), so importing it costs nothing and needs no pandas;
`frames.typed()` applies it, to every frame the client returns, aggregations
included.  README "Analysing room usage" documents the same columns and a test holds
every frame the client returns to this table.

Conventions: times are timezone-aware UTC (`datetime64[ns, UTC]`); rooms, users, kinds
and roles are categoricals (few distinct values, many rows); counts are nullable
integers (`Int64`); free text is the pandas string dtype; flags are nullable booleans.
Rooms and users are spelled `sip:name@domain` as the sidecar stores them.
"""

from __future__ import annotations

__all__ = ["FRAMES", "Schema"]

Schema = dict[str, str]  # column -> dtype name, in column order

_TIME = "datetime64[ns, UTC]"

FRAMES: dict[str, Schema] = {
    # rooms(): one row per room, ordered by room.
    "rooms": {
        "room": "category",  # sip:name@domain
        "name": "string",
        "domain": "string",
        "private": "boolean",
        "members": "Int64",  # every member entry, invited ones included (imc.list_rooms)
        "active": "Int64",  # members who are not only invited
        "invited": "Int64",  # invitations still pending
        "owner": "string",  # the owner's URI; <NA> when the room has none
    },
    # members(room=None): one row per member of each room, ordered by room then member.
    "members": {
        "room": "category",
        "member": "category",  # sip:user@domain
        "role": "category",  # owner, admin or member
        "pending": "boolean",  # invited and not yet accepted
    },
    # events(...): one row per history event, in the order they were recorded (id).
    "events": {
        "id": "Int64",
        "time": _TIME,
        "room": "category",
        "kind": "category",  # imc_sidecar.history.records.EVENT_KINDS
        "actor": "category",  # who sent the command (the inviter for invite_failed)
        "subject": "category",  # the member it was about; <NA> for room events, refusals
        "result": "string",  # "ok", or why nothing changed
        "detail": "string",  # new role (role_changed), final status (invite_failed)
    },
    # messages(...): one row per chat text the room accepted (answered 200).
    "messages": {
        "id": "Int64",
        "time": _TIME,  # when the room accepted it
        "room": "category",
        "sender": "category",
        "body_size": "Int64",  # bytes of the sender's body
        "content_type": "category",
        "recipients": "Int64",  # copies sent
        "delivered": "Int64",  # copies answered 2xx
        "failed": "Int64",  # copies answered >= 300, timed out or never sent
        "worst_status": "Int64",  # highest failing status; <NA> without failures
        "latency_ms": "Float64",  # acceptance to the last copy's final answer; <NA>: none
        "body": "string",  # <NA> unless the sidecar runs with history_bodies
    },
    # stats(): one row per statistic of the imc group, ordered by name.  Over the RPC
    # every one; from the database only the gauges it can give: active_rooms, members.
    "stats": {
        "name": "string",  # e.g. active_rooms (group "imc" implied)
        "value": "Int64",
    },
    # -- aggregations (client/aggregate.py) -------------------------------------------
    # activity(by=None): chat messages per time bucket, every bucket of the span
    # (zeros included), oldest first; the bucket size is in `frame.attrs["freq"]`.
    "activity": {
        "time": _TIME,  # start of the bucket
        "messages": "Int64",
    },
    # activity(by="room"): the same for every room, every bucket × room pair.
    "activity_by_room": {
        "time": _TIME,
        "room": "category",
        "messages": "Int64",
    },
    # activity(by="sender"): the same for every sender.
    "activity_by_sender": {
        "time": _TIME,
        "sender": "category",
        "messages": "Int64",
    },
    # top_senders(n): the n senders with the most messages, most first (ties by sender).
    "top_senders": {
        "sender": "category",
        "messages": "Int64",
        "rooms": "Int64",  # distinct rooms they wrote to
        "bytes": "Int64",  # sum of body_size
        "first": _TIME,  # their first and last message
        "last": _TIME,
    },
    # invite_funnel(): one row per room that had invitations, ordered by room;
    # invited = accepted + rejected + failed + pending + other.
    "invite_funnel": {
        "room": "category",
        "invited": "Int64",  # invitations seen in the history, plus pending ones from before it
        "accepted": "Int64",  # #accept (or the invitee's #join)
        "rejected": "Int64",  # #reject
        "failed": "Int64",  # the invitation could not be delivered (invite_failed)
        "pending": "Int64",  # still invited now (members() pending)
        "other": "Int64",  # left, removed or room destroyed while invited
        "accept_rate": "Float64",  # accepted / invited
    },
    # delivery_report(): one row per room with messages, ordered by room.
    "delivery_report": {
        "room": "category",
        "messages": "Int64",
        "copies": "Int64",  # sum of recipients
        "delivered": "Int64",
        "failed": "Int64",
        "failure_rate": "Float64",  # failed / copies; <NA> without copies
        "latency_p50_ms": "Float64",  # over the room's messages with a latency
        "latency_p90_ms": "Float64",
        "latency_p99_ms": "Float64",
    },
}
