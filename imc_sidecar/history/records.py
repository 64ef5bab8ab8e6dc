"""Usage history as plain records: what one command or one chat message leaves behind.

Pure: the edge passes in the engine's outcome, the wall-clock time (for the rows) and
the loop's monotonic time (for delivery latency).  The records are the rows of our two
history tables (tables.py), field for field.

Events come from the state changes a command made, so history and the durable state can
never tell different stories: a `MemberAdded` with the invited bit is an invitation, a
`MemberFlagsChanged` by `#accept` an acceptance, and so on.  A command refused with a
negative rc changed nothing; it leaves one row whose `result` is the refusal's reason.
"""

from __future__ import annotations

from typing import NamedTuple

from ..imc.changes import (
    MemberAdded,
    MemberFlagsChanged,
    MemberRemoved,
    RoomCreated,
    RoomDestroyed,
    room_of,
)
from ..imc.model import MEMBER_ADMIN, MEMBER_INVITED, MEMBER_OWNER
from ..imc.outcome import Outcome

__all__ = [
    "EVENT_KINDS",
    "OK",
    "EventRecord",
    "FanoutTally",
    "MessageRecord",
    "command_events",
    "role_name",
]

OK = "ok"

# Every kind an event row can have, in the order of a member's life.
EVENT_KINDS = (
    "created",
    "destroyed",
    "joined",
    "invited",
    "accepted",
    "rejected",
    "invite_failed",
    "role_changed",
    "left",
    "removed",
)

# The kind a command would have recorded, for its refusal row.
_ATTEMPTED = {
    "create": "created",
    "join": "joined",
    "invite": "invited",
    "add": "joined",
    "accept": "accepted",
    "reject": "rejected",
    "remove": "removed",
    "leave": "left",
    "destroy": "destroyed",
    "modify": "role_changed",
}

_REMOVAL = {"reject": "rejected", "remove": "removed", "leave": "left"}


class EventRecord(NamedTuple):
    time_us: int  # UTC, microseconds since the epoch
    room: str  # sip:name@domain
    kind: str  # one of EVENT_KINDS
    actor: str  # who sent the command (the inviter for invite_failed)
    subject: str | None  # the member it was about; None for room events and refusals
    result: str  # OK, or why nothing changed
    detail: str | None  # the new role of role_changed, the final status of invite_failed


class MessageRecord(NamedTuple):
    time_us: int  # when the room accepted it (answered 200)
    room: str
    sender: str
    body_size: int  # bytes of the sender's body
    content_type: str
    recipients: int
    delivered: int  # copies answered 2xx
    failed: int  # copies answered >= 300, timed out or never sent
    worst_status: int | None  # the highest final status >= 300, None without failures
    latency_us: int | None  # acceptance to the last final answer; None without recipients
    body: str | None  # only when the history_bodies setting asks for it


def role_name(flags: int) -> str:
    if flags & MEMBER_OWNER:
        return "owner"
    if flags & MEMBER_ADMIN:
        return "admin"
    return "member"


def command_events(outcome: Outcome, time_us: int) -> list[EventRecord]:
    """The rows a command leaves: one per change it made, or one for its refusal."""
    command = outcome.command
    if command is None:
        return []
    actor = outcome.actor
    if outcome.rc < 0:
        kind = _ATTEMPTED.get(command)
        if kind is None:  # a command that only reads (#members, #rooms, #help)
            return []
        return [EventRecord(time_us, outcome.room, kind, actor, None, outcome.reason, None)]
    events: list[EventRecord] = []
    created = False
    for change in outcome.changes:
        room = room_of(change)
        if isinstance(change, RoomCreated):
            created = True
            events.append(EventRecord(time_us, room, "created", actor, actor, OK, None))
            continue
        if isinstance(change, RoomDestroyed):
            events.append(EventRecord(time_us, room, "destroyed", actor, None, OK, None))
            continue
        subject = f"sip:{change.user}@{change.domain}"
        if isinstance(change, MemberAdded):
            if created and change.flags & MEMBER_OWNER:
                continue  # the creator, already told by "created"
            kind = "invited" if change.flags & MEMBER_INVITED else "joined"
            events.append(EventRecord(time_us, room, kind, actor, subject, OK, None))
        elif isinstance(change, MemberFlagsChanged):
            if command == "modify":
                role = role_name(change.flags)
                events.append(EventRecord(time_us, room, "role_changed", actor, subject, OK, role))
            else:  # #accept, or an invitee's #join
                events.append(EventRecord(time_us, room, "accepted", actor, subject, OK, None))
        elif isinstance(change, MemberRemoved):
            if command == "invite-failed":
                events.append(EventRecord(time_us, room, "invite_failed", actor, subject, OK,
                                          outcome.detail))
                continue
            kind = _REMOVAL.get(command, "removed")
            events.append(EventRecord(time_us, room, kind, actor, subject, OK, None))
    return events


class FanoutTally:
    """Counts the final answers of one chat message's copies, as they come in."""

    __slots__ = (
        "body", "content_type", "delivered", "failed", "last", "recipients", "room",
        "sender", "size", "started", "time_us", "worst",
    )

    def __init__(
        self,
        time_us: int,
        started: float,
        room: str,
        sender: str,
        size: int,
        content_type: str,
        recipients: int,
        body: str | None,
    ) -> None:
        self.time_us = time_us
        self.started = started  # monotonic time when accepted
        self.room = room
        self.sender = sender
        self.size = size
        self.content_type = content_type
        self.recipients = recipients
        self.body = body
        self.delivered = 0
        self.failed = 0
        self.worst = 0
        self.last = started

    @property
    def done(self) -> bool:
        return self.delivered + self.failed >= self.recipients

    def answered(self, status: int, now: float) -> bool:
        """One copy ended with `status` at monotonic time `now`; True once every copy has."""
        if status < 300:
            self.delivered += 1
        else:
            self.failed += 1
            if status > self.worst:
                self.worst = status
        if now > self.last:
            self.last = now
        return self.delivered + self.failed >= self.recipients

    def add(self, delivered: int, failed: int, worst: int, last: float) -> bool:
        """Several copies ended, the last at monotonic time `last`; True once every copy
        has (`answered` for a batch)."""
        self.delivered += delivered
        self.failed += failed
        if worst > self.worst:
            self.worst = worst
        if last > self.last:
            self.last = last
        return self.delivered + self.failed >= self.recipients

    def abandon(self, status: int) -> None:
        """Copies still unanswered when the sidecar stops count as failed."""
        missing = self.recipients - self.delivered - self.failed
        if missing > 0:
            self.failed += missing
            self.worst = max(self.worst, status)

    def record(self) -> MessageRecord:
        latency = round((self.last - self.started) * 1e6) if self.recipients else None
        return MessageRecord(
            self.time_us, self.room, self.sender, self.size, self.content_type,
            self.recipients, self.delivered, self.failed, self.worst or None, latency,
            self.body,
        )
