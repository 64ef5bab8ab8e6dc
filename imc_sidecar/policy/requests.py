"""The request policy: what the sidecar does with one MESSAGE, decided without I/O.

This is the part of Kamailio's `imc_manager()` that is not the chat engine: whether the
sidecar takes requests at all right now (not while stopping or reloading), overload
admission (admission.py), handing the request to the engine (a bug in it costs one
500, never the server), and what a failed database write means: while the database
does not answer (database.py), a command that would change state is taken back and
refused with a notice, and everything else (chat, #members, #rooms, #help) goes on.
It takes the parsed request, the backlog of unanswered MESSAGEs, the lifecycle state
and `now`, and returns a `Decision`: the reply, and with it the engine's outcome (the
changes to make durable and the copies to send).  The app carries decisions out; it decides nothing.
"""

from __future__ import annotations

import enum
import logging
import math
from dataclasses import dataclass

from ..imc.engine import ImcEngine
from ..imc.outcome import ChatRequest, InviteTicket, Outcome, Outgoing
from ..sip.message import Request
from .admission import RETRY_AFTER, Admission
from .database import MAX_RETRY, DatabaseHealth
from .rates import SenderRates

__all__ = ["Decision", "Lifecycle", "RequestPolicy"]

log = logging.getLogger("imc_sidecar")


class Lifecycle(enum.Enum):
    RUNNING = "running"
    RELOADING = "reloading"  # memory is being made equal to the database again
    STOPPING = "stopping"


@dataclass(frozen=True, slots=True)
class Decision:
    """The reply to one request and, when the engine ran, its outcome.

    `outcome.changes` must be durable before the reply and the copies leave when
    `durable_first` is set; `outcome.messages` are the copies to send.  `chat` marks an
    accepted chat text (its copies' answers make its history row); `refused` a chat text
    turned away by admission.
    """

    status: int
    reason: str
    outcome: Outcome | None = None
    headers: tuple[tuple[str, str], ...] = ()
    durable_first: bool = False
    chat: bool = False
    refused: bool = False  # by admission (overload)
    # what refused it, for the counters: "size", "rate" or "database" (this policy's),
    # or a room limit's kind
    limited: str | None = None
    # a changing command that met a reload: it may wait for the reload to end and run
    # then, instead of getting this refusal (the app bounds how many wait)
    after_reload: bool = False


_SHUTTING_DOWN = Decision(503, "Shutting down")
_RELOADING = Decision(503, "Reloading state, retry", after_reload=True)
_OVERLOADED = Decision(
    503, "Service Unavailable", headers=(("Retry-After", str(RETRY_AFTER)),), refused=True
)
_DATABASE_ERROR = "Database error"
_DATABASE_DOWN = "Database Unavailable"
_CONFLICT = "Room Changed Elsewhere, Retry"
DATABASE_DOWN_NOTICE = (
    "*** The room database is not reachable, so {command} was not carried out; "
    "please try again in a moment"
)
_TOO_LARGE = Decision(413, "Request Entity Too Large", limited="size")
_TOO_FAST = "Too Many Messages"
SLOW_DOWN = "*** You are sending messages too fast; wait {seconds} s before the next one"


class RequestPolicy:
    def __init__(
        self,
        engine: ImcEngine,
        admission: Admission,
        durable: bool,
        max_body: int = 0,
        rates: SenderRates | None = None,
        database: DatabaseHealth | None = None,
    ) -> None:
        """`durable`: changes are written through to a database (db_mode 2);
        `max_body`: the largest MESSAGE body taken (0: any); `rates`: chat texts per
        sender (None: no limit); `database`: whether it answers (the app keeps it)."""
        self.engine = engine  # replaced after a reload (`reloaded`)
        self.admission = admission
        self.durable = durable
        self.max_body = max_body
        self.rates = rates
        self.database = database if database is not None else DatabaseHealth()

    def decide(
        self, request: Request, pending: int, lifecycle: Lifecycle, now: float
    ) -> Decision:
        """The decision for one new MESSAGE, with `pending` MESSAGEs unanswered."""
        if lifecycle is Lifecycle.STOPPING:
            return _SHUTTING_DOWN
        engine = self.engine
        admission = self.admission
        body = request.body
        if self.max_body and len(body) > self.max_body:
            return _TOO_LARGE
        is_text = not engine.is_command(body)
        if is_text and self.rates is not None:
            wait, first = self.rates.take(_sender_key(request.from_uri), now)
            if wait:
                return self._too_fast(request, wait, first)
        # The engine is a pure function: the backlog is the same before and after it.
        if is_text and admission.refusing(pending):
            # Still overloaded: refuse a text before spending anything more on it.
            admission.refuse()
            return _OVERLOADED
        chat = ChatRequest(
            request.uri, request.from_uri, request.call_id, body, request.content_type
        )
        try:
            outcome = engine.handle(chat)
        except Exception:  # a bug must cost one request, never the server
            log.exception("engine failed on %s", chat.call_id)
            outcome = Outcome(rc=-1, status=500, reason="Internal Server Error")
        if outcome.changes and not self.can_change(lifecycle):
            # It ran against memory only: take it back, refuse it, say why.
            engine.undo(outcome)
            if not self.database.reachable:
                return self._database_down(outcome, request.from_uri, request.uri)
            return _RELOADING
        messages = outcome.messages
        if messages and outcome.command is None:
            # A chat text: its copies go out only if the backlog allows.
            copies = sum(len(out.recipients) for out in messages)
            if not admission.admit(pending, copies, now):
                return _OVERLOADED
        return self._decision(outcome, chat=outcome.command is None and outcome.rc == 1)

    def _too_fast(self, request: Request, wait: float, first: bool) -> Decision:
        """503 with Retry-After for a sender over its rate; the first refusal of a burst
        also tells the sender, from the room, in a notice."""
        seconds = max(1, math.ceil(wait))
        headers = (("Retry-After", str(seconds)),)
        outcome = None
        if first:
            notice = Outgoing(
                (request.from_uri,), request.uri, SLOW_DOWN.format(seconds=seconds).encode()
            )
            outcome = Outcome(rc=-1, status=503, reason=_TOO_FAST, messages=[notice])
        return Decision(503, _TOO_FAST, outcome, headers, limited="rate")

    def can_change(self, lifecycle: Lifecycle) -> bool:
        """Whether state may change now.  Not while memory is being reloaded (a change
        made in the old memory would be lost with it), nor while the database does not
        answer; chat and reading commands go on meanwhile."""
        return lifecycle is Lifecycle.RUNNING and self.database.reachable

    def delivery_failed(
        self, ticket: InviteTicket, status: int, reason: str, lifecycle: Lifecycle
    ) -> Decision:
        """An invitation's MESSAGE ended with `status` >= 300: the engine drops the
        invitee; the decision has no reply to give (nobody waits for one).  While state
        may not change (`can_change`), the invitee stays (invited) instead."""
        engine = self.engine
        outcome = engine.invite_failed(ticket, status, reason)
        if outcome.changes and not self.can_change(lifecycle):
            engine.undo(outcome)
            return Decision(503, _DATABASE_DOWN, Outcome(-1, 503, _DATABASE_DOWN))
        return self._decision(outcome)

    def write_failed(
        self, outcome: Outcome, unavailable: bool, conflict: bool = False
    ) -> Decision:
        """What the sender hears when `outcome`'s changes could not be stored: nothing
        is acknowledged and no notice claims a change the database does not hold.

        `unavailable`: the database did not answer; memory has taken the changes back
        (`ImcEngine.undo`) and the sender is told in a notice, as while it stays down.
        Otherwise it refused them, and memory is to be reloaded from it
        (`Lifecycle.RELOADING`).  `conflict`: another sidecar changed the room first,
        twice (the first time the command is run again): 503 with Retry-After.
        """
        if unavailable:
            return self._database_down(outcome, outcome.actor, outcome.room)
        if conflict:
            refused = Outcome(
                rc=-1, status=503, reason=_CONFLICT, command=outcome.command,
                actor=outcome.actor, room=outcome.room,
            )
            return Decision(503, _CONFLICT, refused, (("Retry-After", "1"),))
        failed = Outcome(
            rc=-1, status=500, reason=_DATABASE_ERROR, command=outcome.command,
            actor=outcome.actor, room=outcome.room,
        )
        return Decision(500, _DATABASE_ERROR, failed)

    def _database_down(self, outcome: Outcome, sender: str, room: str) -> Decision:
        """503 with Retry-After for a command that needs the database, and a notice
        from the room to its sender saying it was not carried out."""
        command = outcome.command or "the command"
        text = DATABASE_DOWN_NOTICE.format(command=f"#{command}")
        refused = Outcome(
            rc=-1, status=503, reason=_DATABASE_DOWN, command=outcome.command,
            actor=outcome.actor, room=outcome.room,
            messages=[Outgoing((sender,), room, text.encode())] if sender and room else [],
        )
        headers = (("Retry-After", str(int(MAX_RETRY))),)
        return Decision(503, _DATABASE_DOWN, refused, headers, limited="database")

    def reloaded(self, engine: ImcEngine) -> None:
        """Memory equals the database again, in this engine."""
        self.engine = engine

    def _decision(self, outcome: Outcome, chat: bool = False) -> Decision:
        return Decision(
            outcome.status, outcome.reason, outcome,
            durable_first=self.durable and bool(outcome.changes), chat=chat,
            limited=outcome.limit,
        )


def _sender_key(from_uri: str) -> str:
    """Whose bucket a text draws on: the From URI without its parameters, any case."""
    return from_uri.partition(";")[0].lower()
