"""The demo's script, decided in advance: who sends what to which room, and when.

Pure and seedable: no sockets, no clock, no global random state.  The same
`ScenarioConfig` gives the same `Scenario` in any process, because nothing here
iterates a set of strings (its order would follow PYTHONHASHSEED).

Activity is heavy-tailed, as in real chat systems: users and rooms get Zipf weights, so
a few of each carry most of the traffic, and texts come in conversations whose lengths
follow a (capped) Pareto law.  `Rooms`, a small model of the sidecar's rooms, keeps
every action plausible (only members chat; only owners and admins invite, remove and
modify) and predicts its status; the runner replays the same model on the statuses that
really came back.
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "COMMANDS",
    "KINDS",
    "Action",
    "Person",
    "RoomPlan",
    "RoomState",
    "Rooms",
    "Scenario",
    "ScenarioConfig",
    "build_scenario",
    "host_addresses",
    "zipf_weights",
]

# Canonical command names, as the sidecar counts them (`#deny` is reject, `#exit`
# leave, `#list` members), plus "unknown" for a mistyped one; "chat" is a text.
COMMANDS = (
    "create", "join", "invite", "accept", "reject", "leave", "remove", "modify",
    "members", "rooms", "help", "destroy", "unknown",
)
KINDS = (*COMMANDS, "chat")

OWNER, ADMIN, MEMBER, INVITED = "owner", "admin", "member", "invited"
OK, REFUSED = 200, 500  # what the sidecar answers a command that succeeds / fails

MIN_GAP = 0.01  # s between two actions, so they reach the sidecar in plan order
CHAT_GAP = 1.2  # mean s between the texts of one conversation
BURST_ALPHA = 1.4  # Pareto index of conversation lengths: small is heavier-tailed
BURST_CAP = 30
ANSWER_DELAY = 2.5  # mean s an invitee takes to #accept or #reject
ACCEPT_SHARE = 0.75
CHAT_DAMP = 0.5  # exponent on user weights when picking who talks in a room
TOUR_TRIES = 6  # a guaranteed action whose moment does not suit it is tried again 1 s later

# Steady-state mix: what a spontaneous event is.  "bad_*" are requests the sidecar
# refuses (500), kept rare: analysts see a few refusals, as in real use.
MIX: dict[str, float] = {
    "chat": 0.62, "join": 0.07, "invite": 0.06, "leave": 0.04, "remove": 0.02,
    "modify": 0.03, "members": 0.04, "rooms": 0.02, "help": 0.01, "unknown": 0.01,
    "bad_chat": 0.015, "bad_remove": 0.0075, "bad_accept": 0.0075,
}
# Each happens at least once in a run long enough for it, so every kind shows up.
TOUR = (
    "leave", "remove", "modify", "members", "rooms", "help", "unknown",
    "bad_chat", "bad_remove", "bad_accept", "join_private",
)
_RETRIED = (*TOUR, "ghost_invite", "destroy")

NAMES = (
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
    "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter",
    "wendy", "amir", "bea", "chen", "dana", "emeka", "fatima", "goran", "hana", "ines",
    "jonas", "kaito", "lena", "mateo", "noor", "oskar", "priya", "quinn", "rosa", "sami",
    "tariq", "uma", "vera", "wei", "xena", "yusuf", "zoe",
)
TEXTS = (
    "hi all", "morning!", "anyone around?", "lunch at 12?", "build is green again",
    "can someone review my change?", "+1", "thanks!", "on my way", "see you tomorrow",
    "the deploy is done", "who broke staging?", "ça marche 👍", "meeting moved to 3pm",
    "let me check", "ok", "lol", "great idea", "I'll take that one", "brb",
    "does anyone have the slides?", "coffee?", "rebooting the router", "done ✅",
)
TYPOS = ("#memebrs", "#hlep", "#joni", "#leav", "#romos")


@dataclass(frozen=True, slots=True)
class ScenarioConfig:
    users: int = 40
    """Simulated users that answer every MESSAGE."""
    ghosts: int = 3
    """More users who never answer: invitations to them time out."""
    rooms: int = 8
    duration: float = 60.0
    """Seconds of traffic."""
    rate: float = 8.0
    """Requests per second on average, texts and commands."""
    seed: int = 1
    domain: str = "demo.test"
    """Host part of the room URIs."""
    network: str = "127.77.0.0/16"
    """Loopback network the users' addresses are taken from, in order."""
    first_room: int = 1
    """Rooms are chat-<first_room>, chat-<first_room + 1>, ..."""
    private_share: float = 0.3
    zipf: float = 1.2
    """Zipf exponent of user and room activity."""

    def check(self) -> None:
        """Raise ValueError, naming the option, for a config that cannot be run."""
        if self.users < 2:
            raise ValueError("--users must be at least 2")
        if self.ghosts < 0:
            raise ValueError("--ghosts must not be negative")
        if self.rooms < 1:
            raise ValueError("--rooms must be at least 1")
        if not self.duration > 0:
            raise ValueError("--duration must be positive")
        if not self.rate > 0:
            raise ValueError("--rate must be positive")
        if self.first_room < 0:
            raise ValueError("first room number must not be negative")
        if not self.domain or self.domain != self.domain.lower() or "@" in self.domain:
            raise ValueError("--domain must be a lower-case host name")
        host_addresses(self.network, self.users + self.ghosts)


@dataclass(frozen=True, slots=True)
class Person:
    name: str  # lower-case SIP user part
    host: str  # loopback address it listens on, port 5060
    weight: float  # share of activity, relative
    ghost: bool = False

    @property
    def uri(self) -> str:
        return f"sip:{self.name}@{self.host}"

    @property
    def handle(self) -> str:
        """How a command names this user: with the host, since it is not the room's."""
        return f"{self.name}@{self.host}"


@dataclass(frozen=True, slots=True)
class RoomPlan:
    name: str
    uri: str
    private: bool
    weight: float


@dataclass(frozen=True, slots=True)
class Action:
    at: float  # seconds after the start
    kind: str  # one of KINDS
    sender: str  # user URI: the From
    room: str  # room URI: the Request-URI and To
    body: str
    expect: int = OK  # the status the model predicts
    target: str | None = None  # user URI named by invite, remove, modify
    role: str | None = None  # modify: the new role
    private: bool = False  # create: a private room
    ghost: bool = False  # invite: the invitee never answers
    why: str = ""  # what makes an expected refusal one


@dataclass(frozen=True)
class Scenario:
    config: ScenarioConfig
    people: tuple[Person, ...]  # users first, then ghosts
    rooms: tuple[RoomPlan, ...]
    actions: tuple[Action, ...]  # in time order

    @property
    def users(self) -> tuple[Person, ...]:
        return tuple(p for p in self.people if not p.ghost)

    @property
    def ghosts(self) -> tuple[Person, ...]:
        return tuple(p for p in self.people if p.ghost)


# -- the rooms model ---------------------------------------------------------------------


@dataclass(slots=True)
class RoomState:
    uri: str
    private: bool
    members: dict[str, str] = field(default_factory=dict)  # user URI -> role, owner first
    invitations: int = 0  # members whose role is INVITED, counted as `Rooms` changes them

    def active_count(self) -> int:
        return len(self.members) - self.invitations

    def set_role(self, uri: str, role: str) -> None:
        self.invitations += (role == INVITED) - (self.members.get(uri) == INVITED)
        self.members[uri] = role

    def drop(self, uri: str) -> None:
        self.invitations -= self.members.pop(uri) == INVITED

    @property
    def owner(self) -> str:
        return next((uri for uri, role in self.members.items() if role == OWNER), "")

    def active(self) -> list[str]:
        return [uri for uri, role in self.members.items() if role != INVITED]

    def privileged(self) -> list[str]:
        return [uri for uri, role in self.members.items() if role in (OWNER, ADMIN)]

    def invited(self) -> list[str]:
        return [uri for uri, role in self.members.items() if role == INVITED]


class Rooms:
    """The rooms as the sidecar has them once the given actions were answered 200."""

    def __init__(self) -> None:
        self.live: dict[str, RoomState] = {}
        self.created: list[RoomState] = []  # every room created, in order
        self.destroyed: list[str] = []

    def apply(self, action: Action) -> None:
        room = self.live.get(action.room)
        kind, sender = action.kind, action.sender
        if kind in ("create", "join") and room is None:
            # `#join` of a missing room creates it (create_on_join, the default).
            room = RoomState(action.room, action.private and kind == "create", {sender: OWNER})
            self.live[room.uri] = room
            self.created.append(room)
            return
        if room is None:
            return
        role = room.members.get(sender)
        if kind in ("create", "join"):
            if role == INVITED or (role is None and not room.private):
                room.set_role(sender, MEMBER)  # an invitee's #join is an #accept
        elif kind == "invite" and action.target is not None:
            if action.target not in room.members:
                room.set_role(action.target, INVITED)
        elif kind == "accept" and role == INVITED:
            room.set_role(sender, MEMBER)
        elif (kind == "reject" and role == INVITED) or (
            kind == "leave" and role is not None and role != OWNER
        ):
            room.drop(sender)
        elif kind == "remove" and action.target is not None:
            if room.members.get(action.target, OWNER) != OWNER:
                room.drop(action.target)
        elif kind == "modify" and action.target in room.members and action.role:
            room.set_role(action.target, action.role.lower())
        elif kind == "destroy":
            del self.live[room.uri]
            self.destroyed.append(room.uri)

    def invitation_failed(self, room_uri: str, invitee: str) -> None:
        """The sidecar gave up on an invitation and dropped the invitee."""
        room = self.live.get(room_uri)
        if room is not None and room.members.get(invitee) == INVITED:
            room.drop(invitee)


# -- helpers ------------------------------------------------------------------------------


def host_addresses(network: str, count: int) -> list[str]:
    """The first `count` addresses of a loopback network, skipping x.y.z.0, x.y.z.255
    and 127.0.0.1 (where a sidecar usually listens)."""
    try:
        net = ipaddress.IPv4Network(network)
    except ValueError as exc:
        raise ValueError(f"--net {network}: {exc}") from None
    if not net.subnet_of(ipaddress.IPv4Network("127.0.0.0/8")):
        raise ValueError(f"--net {network}: must be inside 127.0.0.0/8 (loopback)")
    out: list[str] = []
    if count == 0:
        return out
    for address in net:
        if address.packed[-1] in (0, 255) or str(address) == "127.0.0.1":
            continue
        out.append(str(address))
        if len(out) == count:
            return out
    raise ValueError(f"--net {network} has fewer than {count} usable addresses")


def zipf_weights(count: int, exponent: float, rng: random.Random) -> list[float]:
    """1/rank**exponent, the ranks shuffled: who is popular is left to the seed."""
    ranks = list(range(1, count + 1))
    rng.shuffle(ranks)
    return [math.pow(rank, -exponent) for rank in ranks]


def _names(count: int, rng: random.Random) -> list[str]:
    pool = list(NAMES)
    rng.shuffle(pool)
    # Past the pool, names repeat with a round number: alice, ..., alice2, ...
    return [pool[i % len(pool)] + (str(i // len(pool) + 1) if i >= len(pool) else "")
            for i in range(count)]


def _mean_burst() -> float:
    # E[min(cap, floor(X))] for P(X >= x) = x**-alpha is the sum of P(... >= k).
    return sum(math.pow(k, -BURST_ALPHA) for k in range(1, BURST_CAP + 1))


# -- the planner --------------------------------------------------------------------------


@dataclass(order=True, frozen=True, slots=True)
class _Intent:
    """Something meant to happen at a time, checked against the model only then."""

    at: float
    seq: int
    kind: str = field(compare=False)
    room: str = field(default="", compare=False)
    user: str = field(default="", compare=False)
    accept: bool = field(default=False, compare=False)
    tries: int = field(default=0, compare=False)


class _Planner:
    def __init__(self, config: ScenarioConfig, rng: random.Random) -> None:
        self.config = config
        self.rng = rng
        names = _names(config.users + config.ghosts, rng)
        hosts = host_addresses(config.network, config.users + config.ghosts)
        weights = zipf_weights(config.users, config.zipf, rng)
        self.people = [
            Person(names[i], hosts[i], weights[i] if i < config.users else 0.0,
                   ghost=i >= config.users)
            for i in range(config.users + config.ghosts)
        ]
        self.by_uri = {p.uri: p for p in self.people}
        self.users = [p for p in self.people if not p.ghost]
        self.ghosts = [p for p in self.people if p.ghost]
        self.user_uris = [p.uri for p in self.users]
        self.user_cum = list(itertools.accumulate(p.weight for p in self.users))
        room_weights = zipf_weights(config.rooms, config.zipf, rng)
        privates = max(1, round(config.rooms * config.private_share)) if config.rooms > 1 else 0
        private_at = rng.sample(range(config.rooms), privates)
        self.plans = [
            RoomPlan(f"chat-{n}", f"sip:chat-{n}@{config.domain}", i in private_at,
                     room_weights[i])
            for i, n in enumerate(range(config.first_room, config.first_room + config.rooms))
        ]
        self.room_weight = {plan.uri: plan.weight for plan in self.plans}
        self.model = Rooms()
        self.actions: list[Action] = []
        self.queue: list[_Intent] = []
        self.seq = itertools.count()
        self.last = -MIN_GAP
        self.answers: list[bool] = []  # accept or not, per real invitation

    # -- choosing ----------------------------------------------------------------------

    def pick_user(self, uris: Sequence[str], damp: float = 1.0) -> str | None:
        if not uris:
            return None
        weights = [math.pow(self.by_uri[u].weight, damp) for u in uris]
        return self.rng.choices(list(uris), weights)[0]

    def pick_room(self, keep: Callable[[RoomState], bool]) -> RoomState | None:
        rooms = [room for room in self.model.live.values() if keep(room)]
        if not rooms:
            return None
        return self.rng.choices(rooms, [self.room_weight.get(r.uri, 1.0) for r in rooms])[0]

    def anyone(self) -> str:
        return self.rng.choices(self.user_uris, cum_weights=self.user_cum)[0]

    def has_outsider(self, room: RoomState) -> bool:
        ghosts = sum(1 for g in self.ghosts if g.uri in room.members)
        return len(room.members) - ghosts < len(self.users)

    def outsider(self, room: RoomState) -> str | None:
        """A user with no place in the room, by weight."""
        if not self.has_outsider(room):
            return None
        for _ in range(64):  # rejection keeps the weights and is cheap while rooms are small
            uri = self.anyone()
            if uri not in room.members:
                return uri
        return self.pick_user([u for u in self.user_uris if u not in room.members])

    # -- output ------------------------------------------------------------------------

    def schedule(self, at: float, kind: str, *, room: str = "", user: str = "",
                 accept: bool = False, tries: int = 0) -> None:
        heapq.heappush(self.queue, _Intent(at, next(self.seq), kind, room, user, accept, tries))

    def emit(self, at: float, kind: str, sender: str, room: str, body: str, *,
             expect: int = OK, target: str | None = None, role: str | None = None,
             private: bool = False, ghost: bool = False, why: str = "") -> bool:
        at = max(at, self.last + MIN_GAP)
        self.last = at
        action = Action(round(at, 3), kind, sender, room, body, expect, target, role,
                        private, ghost, why)
        self.actions.append(action)
        if action.expect == OK:
            self.model.apply(action)
        return True

    # -- the actions, each False when the model offers no way to do it now --------------

    def do(self, kind: str, at: float, intent: _Intent | None = None) -> bool:
        handler: Callable[[float, _Intent | None], bool] = getattr(self, f"_{kind}")
        return handler(at, intent)

    def _create(self, at: float, intent: _Intent | None) -> bool:
        assert intent is not None
        plan = next(p for p in self.plans if p.uri == intent.room)
        owner = self.anyone()
        body = f"#create {plan.name}" + (" private" if plan.private else "")
        self.emit(at, "create", owner, plan.uri, body, private=plan.private)
        # Its first members: public rooms are joined, private ones filled by invitation.
        share = plan.weight / sum(p.weight for p in self.plans)
        size = min(self.config.users, max(2, round(2 + share * self.config.users * 1.5)))
        window = 0.2 * self.config.duration
        for _ in range(size - 1):
            self.schedule(at + self.rng.uniform(0.05, window),
                          "invite" if plan.private else "join", room=plan.uri)
        return True

    def _chat(self, at: float, intent: _Intent | None) -> bool:
        if intent is None:  # a new conversation in a room people talk in
            room = self.pick_room(lambda r: r.active_count() >= 2) or self.pick_room(
                lambda r: r.active_count() >= 1)
        else:
            room = self.model.live.get(intent.room)
        if room is None or not room.active():
            return False
        # Damped within a room: the heavy users already talk in more rooms than others.
        sender = self.pick_user(room.active(), damp=CHAT_DAMP)
        assert sender is not None
        self.emit(at, "chat", sender, room.uri, self.rng.choice(TEXTS))
        if intent is None:
            length = min(BURST_CAP, int(self.rng.paretovariate(BURST_ALPHA)))
            when = at
            for _ in range(length - 1):
                when += self.rng.expovariate(1 / CHAT_GAP)
                if when < self.config.duration:
                    self.schedule(when, "chat", room=room.uri)
        return True

    def _join(self, at: float, intent: _Intent | None) -> bool:
        if intent is not None and intent.room:
            room = self.model.live.get(intent.room)
        else:
            room = self.pick_room(lambda r: not r.private and self.has_outsider(r))
        if room is None:
            return False
        user = self.outsider(room)
        if user is None:
            return False
        return self.emit(at, "join", user, room.uri, "#join")

    def _join_private(self, at: float, intent: _Intent | None) -> bool:
        # Answered 200: the sidecar tells the user it is by invitation only.
        room = self.pick_room(lambda r: r.private and self.has_outsider(r))
        user = self.outsider(room) if room is not None else None
        if room is None or user is None:
            return False
        return self.emit(at, "join", user, room.uri, "#join")

    def _invite(self, at: float, intent: _Intent | None) -> bool:
        if intent is not None and intent.room:
            room = self.model.live.get(intent.room)
        else:
            room = self.pick_room(self.has_outsider)
        if room is None or at > 0.8 * self.config.duration:
            return False
        inviter = self.pick_user(room.privileged())
        invitee = self.outsider(room)
        if inviter is None or invitee is None:
            return False
        person = self.by_uri[invitee]
        self.emit(at, "invite", inviter, room.uri, f"#invite {person.handle}", target=invitee)
        # The first two answers are one of each, so every run shows both.
        if not self.answers:
            accept = self.rng.random() < 0.5
        elif len(self.answers) == 1:
            accept = not self.answers[0]
        else:
            accept = self.rng.random() < ACCEPT_SHARE
        self.answers.append(accept)
        latest = 0.95 * self.config.duration
        answer_at = min(at + 0.3 + self.rng.expovariate(1 / ANSWER_DELAY), latest)
        self.schedule(max(answer_at, at + MIN_GAP), "answer", room=room.uri, user=invitee,
                      accept=accept)
        return True

    def _ghost_invite(self, at: float, intent: _Intent | None) -> bool:
        assert intent is not None
        room = self.pick_room(lambda r: intent.user not in r.members and bool(r.privileged()))
        inviter = self.pick_user(room.privileged()) if room is not None else None
        if room is None or inviter is None:
            return False
        person = self.by_uri[intent.user]
        return self.emit(at, "invite", inviter, room.uri, f"#invite {person.handle}",
                         target=person.uri, ghost=True)

    def _answer(self, at: float, intent: _Intent | None) -> bool:
        assert intent is not None
        room = self.model.live.get(intent.room)
        if room is None or room.members.get(intent.user) != INVITED:
            return False
        if intent.accept:
            return self.emit(at, "accept", intent.user, room.uri, "#accept")
        body = "#deny" if self.rng.random() < 0.3 else "#reject"
        return self.emit(at, "reject", intent.user, room.uri, body)

    def _non_owners(self, room: RoomState) -> list[str]:
        return [uri for uri in room.active() if room.members[uri] != OWNER]

    def _leave(self, at: float, intent: _Intent | None) -> bool:
        # The owner is always active: two active members mean a non-owner among them.
        room = self.pick_room(lambda r: r.active_count() >= 2)
        if room is None:
            return False
        body = "#exit" if self.rng.random() < 0.25 else "#leave"
        return self.emit(at, "leave", self.rng.choice(self._non_owners(room)), room.uri, body)

    def _privileged_on_other(self) -> tuple[RoomState, str, str] | None:
        """A room, one of its owners or admins, and another non-owner member to act on."""
        room = self.pick_room(lambda r: r.active_count() >= 2)
        if room is None:
            return None
        sender = self.pick_user(room.privileged())
        targets = [u for u in self._non_owners(room) if u != sender]
        if sender is None or not targets:
            return None
        return room, sender, self.rng.choice(targets)

    def _remove(self, at: float, intent: _Intent | None) -> bool:
        picked = self._privileged_on_other()
        if picked is None:
            return False
        room, sender, target = picked
        body = f"#remove {self.by_uri[target].handle}"
        return self.emit(at, "remove", sender, room.uri, body, target=target)

    def _modify(self, at: float, intent: _Intent | None) -> bool:
        picked = self._privileged_on_other()
        if picked is None:
            return False
        room, sender, target = picked
        role = ADMIN if room.members[target] == MEMBER else MEMBER
        body = f"#modify {self.by_uri[target].handle} {role}"
        return self.emit(at, "modify", sender, room.uri, body, target=target, role=role)

    def _members(self, at: float, intent: _Intent | None) -> bool:
        room = self.pick_room(lambda r: r.active_count() >= 1)
        sender = self.pick_user(room.active()) if room is not None else None
        if room is None or sender is None:
            return False
        body = "#list" if self.rng.random() < 0.25 else "#members"
        return self.emit(at, "members", sender, room.uri, body)

    def _anywhere(self, at: float, kind: str, body: str) -> bool:
        # Neither needs the room to exist: any planned room URI will do.
        sender = self.anyone()
        room = self.rng.choices(self.plans, [p.weight for p in self.plans])[0]
        return self.emit(at, kind, sender, room.uri, body)

    def _rooms(self, at: float, intent: _Intent | None) -> bool:
        return self._anywhere(at, "rooms", "#rooms")

    def _help(self, at: float, intent: _Intent | None) -> bool:
        return self._anywhere(at, "help", "#help")

    def _unknown(self, at: float, intent: _Intent | None) -> bool:
        # A mistyped command is answered 200 with an "Invalid command" notice.
        return self._anywhere(at, "unknown", self.rng.choice(TYPOS))

    def _bad_chat(self, at: float, intent: _Intent | None) -> bool:
        room = self.pick_room(self.has_outsider)
        sender = self.outsider(room) if room is not None else None
        if room is None or sender is None:
            return False
        return self.emit(at, "chat", sender, room.uri, self.rng.choice(TEXTS),
                         expect=REFUSED, why="not a member")

    def _bad_remove(self, at: float, intent: _Intent | None) -> bool:
        room = self.pick_room(lambda r: any(
            role == MEMBER for role in r.members.values()))
        if room is None:
            return False
        sender = self.rng.choice([u for u, role in room.members.items() if role == MEMBER])
        target = self.rng.choice([u for u in room.active() if u != sender])
        return self.emit(at, "remove", sender, room.uri,
                         f"#remove {self.by_uri[target].handle}", target=target,
                         expect=REFUSED, why="not an owner or admin")

    def _bad_accept(self, at: float, intent: _Intent | None) -> bool:
        room = self.pick_room(self.has_outsider)
        sender = self.outsider(room) if room is not None else None
        if room is None or sender is None:
            return False
        return self.emit(at, "accept", sender, room.uri, "#accept", expect=REFUSED,
                         why="not invited")

    def _destroy(self, at: float, intent: _Intent | None) -> bool:
        # The least popular room goes, and only without pending invitations: a ghost's
        # must run out in a live room for its "not registered" notice to be sent.
        rooms = [r for r in self.model.live.values() if not r.invitations]
        if len(self.model.live) < 3 or not rooms:
            return False
        room = min(rooms, key=lambda r: self.room_weight.get(r.uri, 1.0))
        return self.emit(at, "destroy", room.owner, room.uri, "#destroy")

    # -- the timeline ------------------------------------------------------------------

    def plan(self) -> list[Action]:
        duration, rng = self.config.duration, self.rng
        opening = 0.1 * duration  # rooms are created in the first tenth
        for i, room in enumerate(self.plans):
            self.schedule((i + 0.5) * opening / len(self.plans), "create", room=room.uri)
        # Ghost invitations come early, so their 32 s timeouts end soon after the run.
        for ghost in self.ghosts:
            self.schedule(rng.uniform(opening, max(opening, duration / 3)), "ghost_invite",
                          user=ghost.uri)
        for kind in TOUR:
            self.schedule(rng.uniform(0.3 * duration, 0.8 * duration), kind)
        if self.config.rooms >= 3:
            self.schedule(rng.uniform(0.7 * duration, 0.85 * duration), "destroy")
        share = MIX["chat"]
        events = self.config.rate / (share * _mean_burst() + (1 - share))
        kinds, weights = list(MIX), list(MIX.values())
        at = opening
        while True:
            at += rng.expovariate(events)
            while self.queue and self.queue[0].at <= min(at, duration):
                intent = heapq.heappop(self.queue)
                done = self.do(intent.kind, intent.at, intent)
                retry = intent.tries < TOUR_TRIES and intent.at + 1 < duration
                if not done and retry and intent.kind in _RETRIED:
                    self.schedule(intent.at + 1, intent.kind, user=intent.user,
                                  tries=intent.tries + 1)
            if at >= duration:
                break
            kind = rng.choices(kinds, weights)[0]
            if not self.do(kind, at):
                self.do("chat", at)
        return self.actions


def build_scenario(config: ScenarioConfig) -> Scenario:
    config.check()
    planner = _Planner(config, random.Random(config.seed))
    actions = planner.plan()
    rooms = tuple(planner.plans)
    return Scenario(config, tuple(planner.people), rooms, tuple(actions))
