"""The pure half of the kill -9 cycles test (tests/e2e/test_kill_cycles.py).

What each room must hold, what the database may hold after a kill, and the random
commands users send: no sockets, no clock, no database.  The reasoning behind the
design is in the e2e module's docstring; in short, every room is independent of the
others, its commands reach the engine in the order they were sent (one TCP connection
per room), and the reference is the chat engine itself, run on one room at a time.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from imc_sidecar.imc.changes import StoredMember, StoredRoom
from imc_sidecar.imc.engine import EngineConfig, ImcEngine
from imc_sidecar.imc.model import MEMBER_ADMIN, MEMBER_INVITED, MEMBER_OWNER, Room
from imc_sidecar.imc.outcome import ChatRequest

__all__ = [
    "DOMAIN",
    "KIND_NAMES",
    "USERS",
    "Command",
    "Expected",
    "KillReport",
    "RoomLedger",
    "RoomState",
    "State",
    "choose",
    "expect",
    "next_command",
    "read_tables",
    "room_uri",
]

DOMAIN = "kill.test"
USERS = tuple(f"u{n:02d}" for n in range(24))

Member = tuple[str, str, int]  # (username, domain, flag), as in imc_members


class RoomState(NamedTuple):
    """One room as the tables hold it: its flag and its member rows."""

    flag: int
    members: frozenset[Member]


State = RoomState | None  # None: the room does not exist


def room_uri(index: int) -> str:
    return f"sip:chat-{index}@{DOMAIN}"


@dataclass(frozen=True, slots=True)
class Command:
    room: str  # the Request-URI: every command acts on its own room
    sender: str  # user part of the From URI
    body: str

    @property
    def from_uri(self) -> str:
        return f"sip:{self.sender}@{DOMAIN}"


@dataclass(frozen=True, slots=True)
class Expected:
    """What the sidecar must answer a command, and the room after it."""

    state: State
    status: int
    reason: str
    changes: bool  # the room changes: the 200 leaves only once the change is committed


def expect(before: State, command: Command) -> Expected:
    """Run `command` on a fresh engine holding only this room in state `before`."""
    engine = ImcEngine(EngineConfig())
    name, domain = command.room.removeprefix("sip:").split("@")
    if before is not None:
        members = tuple(StoredMember(*member) for member in sorted(before.members))
        engine.load([StoredRoom(name, domain, before.flag, members)])
    request = ChatRequest(
        command.room, command.from_uri, "model", command.body.encode(), "text/plain"
    )
    outcome = engine.handle(request)
    after = _state(engine.find_room(command.room))
    return Expected(after, outcome.status, outcome.reason, bool(outcome.changes))


def _state(room: Room | None) -> State:
    if room is None:
        return None
    return RoomState(room.flags, frozenset((m.user, m.domain, m.flags) for m in room.members))


# -- what the database holds -----------------------------------------------------------


def read_tables(
    room_rows: Iterable[Sequence[str]], member_rows: Iterable[Sequence[str]]
) -> tuple[dict[str, RoomState], list[str]]:
    """The rooms by URI from the rows of imc_rooms (name, domain, flag) and imc_members
    (username, domain, room, flag), and every break of the invariants that each state
    of this command mix keeps: no member row without its room (a half-done #create or
    #destroy), exactly one owner row per room (no #modify makes or unmakes an owner here,
    and an owner cannot leave or be removed)."""
    flags = {f"sip:{name}@{domain}": int(flag) for name, domain, flag in room_rows}
    members: dict[str, set[Member]] = {uri: set() for uri in flags}
    problems = []
    for user, domain, room, flag in member_rows:
        if room not in members:
            problems.append(f"member row {user}@{domain} (flag {flag}) of missing room {room}")
            continue
        members[room].add((user, domain, int(flag)))
    rooms = {uri: RoomState(flags[uri], frozenset(rows)) for uri, rows in members.items()}
    for uri, state in sorted(rooms.items()):
        owners = [m for m in state.members if m[2] & MEMBER_OWNER]
        if len(owners) != 1:
            problems.append(f"room {uri} has {len(owners)} owner rows: {sorted(state.members)}")
    return rooms, problems


# -- one room's ledger -------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class Sent:
    command: Command
    expected: Expected
    call_id: str
    answer: str = "in flight"


@dataclass(frozen=True, slots=True)
class KillReport:
    """One room at one kill."""

    in_flight: int  # commands sent and not answered
    unconfirmed_changes: int  # changing commands not known to be durable
    landed: int  # of those, how many the database holds (at least)


@dataclass
class RoomLedger:
    """One room: the state known durable, the commands sent since, their replies.

    The room's commands reach the engine in sending order, so after a kill the
    database must hold the state after the durable prefix plus some (possibly none) of
    the later commands, in order: the store commits in engine order, so no later
    command's change can be there without every earlier one's.  A 200 to a command
    that changes the room moves the durable point up to it.
    """

    uri: str
    rng: random.Random
    durable: State = None
    unconfirmed: list[Sent] = field(default_factory=list)  # sent after `durable`, in order
    awaiting: dict[str, Sent] = field(default_factory=dict)  # by Call-ID, unanswered
    recent: deque[Sent] = field(default_factory=lambda: deque(maxlen=24))

    @property
    def head(self) -> State:
        """The room once every command sent so far has run."""
        return self.unconfirmed[-1].expected.state if self.unconfirmed else self.durable

    def send(self, call_id: str, command: Command | None = None) -> Sent:
        """Record `command` as sent, or choose a random one for the state it will meet."""
        if command is None:
            command = next_command(self.uri, self.head, self.rng)
        sent = Sent(command, expect(self.head, command), call_id)
        self.unconfirmed.append(sent)
        self.awaiting[call_id] = sent
        self.recent.append(sent)
        return sent

    def answered(self, call_id: str, status: int, reason: str) -> str | None:
        """Take a final reply; a problem when it is not what the engine answers."""
        sent = self.awaiting.pop(call_id)
        sent.answer = f"{status} {reason}"
        expected = sent.expected
        if (status, reason) != (expected.status, expected.reason):
            return self.explain(
                f"answered {sent.answer!r} to {_show(sent)}, the engine answers "
                f"'{expected.status} {expected.reason}'"
            )
        if expected.changes and sent in self.unconfirmed:
            self.durable = expected.state
            del self.unconfirmed[: self.unconfirmed.index(sent) + 1]
        return None

    def after_kill(self, found: State) -> KillReport | str:
        """The database holds `found` for this room once the sidecar is dead: check it
        is one of the allowed states and carry on from it; a problem otherwise."""
        allowed = [self.durable, *(sent.expected.state for sent in self.unconfirmed)]
        if found not in allowed:
            return self.explain(
                f"the database holds {_rows(found)}; allowed: the durable state "
                f"{_rows(self.durable)} or it after one to all of the "
                f"{len(self.unconfirmed)} unconfirmed commands (each shown above)"
            )
        landed_at = allowed.index(found)  # the shortest prefix that gives it
        report = KillReport(
            in_flight=len(self.awaiting),
            unconfirmed_changes=sum(s.expected.changes for s in self.unconfirmed),
            landed=sum(s.expected.changes for s in self.unconfirmed[:landed_at]),
        )
        self.durable = found
        self.unconfirmed.clear()
        self.awaiting.clear()
        return report

    def explain(self, problem: str) -> str:
        lines = [f"{self.uri}: {problem}", "its last commands, oldest first:"]
        for sent in self.recent:
            mark = " (unconfirmed)" if sent in self.unconfirmed else ""
            after = _rows(sent.expected.state)
            lines.append(f"  {_show(sent)} -> {sent.answer}{mark}; then {after}")
        return "\n".join(lines)


def _show(sent: Sent) -> str:
    return f"{sent.command.sender}: {sent.command.body!r} [{sent.call_id}]"


def _rows(state: State) -> str:
    if state is None:
        return "no room"
    members = ", ".join(f"{user}:{flag}" for user, _domain, flag in sorted(state.members))
    return f"room flag {state.flag} members {{{members}}}"


# -- the random commands -------------------------------------------------------------------


@dataclass(frozen=True)
class _People:
    """Who is what in one room (sorted lists, so that choices follow the seed only)."""

    owner: list[str]
    privileged: list[str]  # the owner and accepted admins
    invited: list[str]
    others: list[str]  # member rows but the owner's (invitees included)
    active_others: list[str]  # accepted members but the owner
    outsiders: list[str]
    flags: dict[str, int]

    @classmethod
    def of(cls, state: State) -> _People:
        flags = {} if state is None else {user: flag for user, _d, flag in state.members}

        def having(test: Callable[[int], bool]) -> list[str]:
            return sorted(user for user, flag in flags.items() if test(flag))

        return cls(
            owner=having(lambda f: bool(f & MEMBER_OWNER)),
            privileged=having(lambda f: bool(f & (MEMBER_OWNER | MEMBER_ADMIN))
                              and not f & MEMBER_INVITED),
            invited=having(lambda f: bool(f & MEMBER_INVITED)),
            others=having(lambda f: not f & MEMBER_OWNER),
            active_others=having(lambda f: not f & (MEMBER_OWNER | MEMBER_INVITED)),
            outsiders=[user for user in USERS if user not in flags],
            flags=flags,
        )

    def pool(self, name: str) -> list[str]:
        if name == "anyone":
            return list(USERS)
        if name == "active":
            return sorted(self.owner + self.active_others)
        if name == "unprivileged":  # may not invite: plain members, invitees, outsiders
            return [u for u in USERS if u not in self.privileged]
        if name == "not_owner":
            return [u for u in USERS if u not in self.owner]
        if name == "not_active":  # may not chat: invitees and outsiders
            return sorted(self.invited + self.outsiders)
        pool: list[str] = getattr(self, name)
        return pool


def _role_toggle(people: _People, target: str) -> str:
    return "member" if people.flags[target] & MEMBER_ADMIN else "admin"


def _text(rng: random.Random) -> str:
    return f"text {rng.randrange(10**6)}"


# (name, weight when the room is missing, weight when it exists, sender pool, target
# pool or None, body from (target, people, rng)).  Weights favour what the room allows,
# with a share of refusals (500s and in-band refusals) to check the replies too.
_Body = Callable[[str, _People, random.Random], str]
_KINDS: tuple[tuple[str, float, float, str, str | None, _Body], ...] = (
    ("create", 3, 0.3, "anyone", None, lambda t, p, r: "#create"),
    ("create private", 2, 0.2, "anyone", None, lambda t, p, r: "#create private"),
    ("join", 2, 2, "outsiders", None, lambda t, p, r: "#join"),
    ("join when invited", 0, 0.5, "invited", None, lambda t, p, r: "#join"),
    ("invite", 0, 2, "privileged", "outsiders", lambda t, p, r: f"#invite {t}"),
    ("invite refused", 0, 0.3, "unprivileged", "anyone", lambda t, p, r: f"#invite {t}"),
    ("accept", 0, 1.5, "invited", None, lambda t, p, r: "#accept"),
    ("reject", 0, 1, "invited", None, lambda t, p, r: r.choice(("#reject", "#deny"))),
    ("add", 0, 1.5, "privileged", "outsiders", lambda t, p, r: f"#add {t}"),
    ("remove", 0, 1.5, "privileged", "others", lambda t, p, r: f"#remove {t}"),
    ("remove owner", 0, 0.2, "privileged", "owner", lambda t, p, r: f"#remove {t}"),
    ("leave", 0, 2, "active_others", None, lambda t, p, r: r.choice(("#leave", "#exit"))),
    ("leave owner", 0, 0.2, "owner", None, lambda t, p, r: "#leave"),
    ("modify", 0, 1, "privileged", "others",
     lambda t, p, r: f"#modify {t} {_role_toggle(p, t)}"),
    ("members", 0, 0.4, "active", None, lambda t, p, r: r.choice(("#members", "#list"))),
    ("destroy", 0, 0.6, "owner", None, lambda t, p, r: "#destroy"),
    ("destroy refused", 0.3, 0.2, "not_owner", None, lambda t, p, r: "#destroy"),
    ("chat", 0, 6, "active", None, lambda t, p, r: _text(r)),
    ("chat refused", 0.5, 0.4, "not_active", None, lambda t, p, r: _text(r)),
)
KIND_NAMES = tuple(kind[0] for kind in _KINDS)


def next_command(room: str, state: State, rng: random.Random) -> Command:
    return choose(room, state, rng)[1]


def choose(room: str, state: State, rng: random.Random) -> tuple[str, Command]:
    """A random command for `room` in `state`, and the name of its kind."""
    people = _People.of(state)
    usable = []
    for kind in _KINDS:
        _name, missing, present, senders, targets, _body = kind
        weight = missing if state is None else present
        if weight and people.pool(senders) and (targets is None or people.pool(targets)):
            usable.append((kind, weight))
    kind = rng.choices([k for k, _w in usable], [w for _k, w in usable])[0]
    name, _missing, _present, senders, targets, body = kind
    sender = rng.choice(people.pool(senders))
    target = rng.choice(people.pool(targets)) if targets is not None else ""
    return name, Command(room, sender, body(target, people, rng))
