"""What goes into the engine and what comes out of it: plain data, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field

from .changes import Change
from .rooms import Journal

__all__ = ["ChatRequest", "InviteTicket", "Outcome", "Outgoing"]


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One incoming SIP MESSAGE, reduced to what imc reads."""

    request_uri: str  # as received (or as rewritten by the front proxy)
    from_uri: str  # the URI inside From, as written, parameters and port included
    call_id: str
    body: bytes
    content_type: str | None  # header value verbatim, None when absent


@dataclass(frozen=True, slots=True)
class InviteTicket:
    """Carried by an invitation so a failed delivery can be fed back to the engine."""

    room_uri: str
    invitee_uri: str
    inviter_uri: str


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One body sent as a separate MESSAGE to each recipient (R-URI = To = recipient).

    A broadcast is one Outgoing with many recipients, so fan-out costs one object.
    `imc_headers` False means the message carries only `extra_hdrs` (Kamailio's
    invite-failure notice): no Content-Type, Supported or In-Reply-To.
    """

    recipients: tuple[str, ...]
    from_uri: str
    body: bytes
    content_type: str = "text/plain"
    in_reply_to: str | None = None
    imc_headers: bool = True
    invite: InviteTicket | None = None


@dataclass(slots=True)
class Outcome:
    """The engine's answer to one request.

    `rc` is what Kamailio's imc_manager() would return (1 or a negative code); `status`
    and `reason` are the SIP reply.  `changes` must be durable before the reply and
    `messages` go out.  `command` names the command run (None for chat), for counters.
    `actor` (the sender, `sip:user@host`) and `room` (the room acted on, or the
    Request-URI's room for a refusal) are set for commands and accepted chat texts, for
    the usage history, as is `detail`: the final status of a failed invitation's delivery.
    `limit` names the room limit that refused a command (limits.py), for the counters;
    `undo` how to take its changes back out of memory (`ImcEngine.undo`).
    """

    rc: int
    status: int
    reason: str
    changes: list[Change] = field(default_factory=list)
    messages: list[Outgoing] = field(default_factory=list)
    command: str | None = None
    actor: str = ""
    room: str = ""
    detail: str | None = None
    limit: str | None = None
    undo: Journal | None = None
