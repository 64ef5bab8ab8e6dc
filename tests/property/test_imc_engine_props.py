"""Random command sequences from a few users: the engine never raises, its changes replay
into the same state, chat never reaches the sender or invitees, ownership stays put."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imc_sidecar.imc.changes import (
    Change,
    MemberAdded,
    MemberFlagsChanged,
    MemberRemoved,
    RoomCreated,
    RoomDestroyed,
    StoredMember,
    StoredRoom,
)
from imc_sidecar.imc.engine import EngineConfig, ImcEngine
from imc_sidecar.imc.model import MEMBER_INVITED, MEMBER_OWNER
from imc_sidecar.imc.outcome import ChatRequest, InviteTicket, Outcome

USERS = ["alice", "alice", "bob", "Carol", "carol", "dave"]
ROOM_URIS = [*["sip:chat-1@d"] * 4, "sip:CHAT-1@d:5060", "sip:chat-2@d", "sip:chat-manager@d"]
TARGETS = ["bob", "carol", "Dave@d", "sip:alice@d"]
ROOMS = ["", "", " chat-2"]
ROLES = ["owner", "admin", "member", "Admin", "boss"]

# Every body a step may send, as a flat list so that each is drawn about equally often;
# the commands that build rooms up are listed more than once.
_PLAIN = [
    *["#create", "#join", "#accept", "hello", "#leave"] * 4,
    "#create private",
    "#create chat-2 private",
    "#create chat-2 bogus",
    "#join chat-2",
    *["#accept chat-2"] * 4,
    "#reject",
    "#reject chat-2",
    "#leave",
    "#exit chat-2",
    "#destroy",
    "#destroy chat-2",
    "#members",
    "#rooms",
    "#help",
    "#foo",
    "#",
    "hi\x00there",
]
_ON_TARGET = [
    f"#{command} {target}{room}"
    for command in ("invite", "add", "remove")
    for target in TARGETS
    for room in ROOMS
]
_MODIFY = [
    f"#modify {target} {role}{room}" for target in TARGETS for role in ROLES for room in ROOMS
]


@dataclass
class Step:
    sender: str
    request_uri: str
    body: str
    fail_invite: int | None = None  # index into tickets seen so far


# Every example starts from a populated state so that random steps mostly meet rooms,
# members and invitees rather than an empty table.
PROLOGUE = [
    ("alice", "sip:chat-1@d", "#create"),
    ("bob", "sip:chat-1@d", "#join"),
    ("Carol", "sip:chat-manager@d", "#join chat-1"),
    ("alice", "sip:chat-2@d", "#create private"),
    ("alice", "sip:chat-2@d", "#invite bob"),
    ("alice", "sip:chat-2@d", "#add carol"),
    ("alice", "sip:chat-1@d", "#invite dave"),
]


def _steps(with_modify: bool) -> st.SearchStrategy[list[Step]]:
    bodies = _PLAIN + _ON_TARGET + (_MODIFY[::2] if with_modify else [])
    # About one step in twenty feeds back a failed invitation instead of a MESSAGE.
    fail_invite = st.sampled_from([None] * 38 + [0, 1])
    step = st.builds(
        Step,
        st.sampled_from(USERS),
        st.sampled_from(ROOM_URIS),
        st.sampled_from(bodies),
        fail_invite,
    )
    steps = st.lists(step, min_size=10, max_size=50)
    return steps.map(lambda drawn: [Step(*step) for step in PROLOGUE] + drawn)


_configs = st.builds(
    EngineConfig,
    hash_size=st.sampled_from([1, 2, 4]),
    create_on_join=st.booleans(),
    check_on_create=st.booleans(),
)


@dataclass
class ReplayStore:
    """What a store does with the changes: rows in insertion order."""

    rooms: dict[tuple[str, str], tuple[int, dict[tuple[str, str], int]]] = field(
        default_factory=dict
    )

    def _members(self, room_uri: str) -> dict[tuple[str, str], int]:
        name, domain = room_uri.removeprefix("sip:").rsplit("@", 1)
        return self.rooms[(name, domain)][1]

    def apply(self, change: Change) -> None:
        if isinstance(change, RoomCreated):
            assert (change.name, change.domain) not in self.rooms
            self.rooms[(change.name, change.domain)] = (change.flags, {})
        elif isinstance(change, RoomDestroyed):
            del self.rooms[(change.name, change.domain)]
        elif isinstance(change, MemberAdded):
            members = self._members(change.room_uri)
            assert (change.user, change.domain) not in members
            members[(change.user, change.domain)] = change.flags
        elif isinstance(change, MemberFlagsChanged):
            members = self._members(change.room_uri)
            assert (change.user, change.domain) in members
            members[(change.user, change.domain)] = change.flags
        else:
            assert isinstance(change, MemberRemoved)
            del self._members(change.room_uri)[(change.user, change.domain)]

    def stored(self) -> list[StoredRoom]:
        return [
            StoredRoom(name, domain, flags, tuple(StoredMember(u, d, f) for (u, d), f in m.items()))
            for (name, domain), (flags, m) in self.rooms.items()
        ]


def snapshot(engine: ImcEngine) -> list[tuple[str, str, int, dict[tuple[str, str], int]]]:
    return [
        (r.name, r.domain, r.flags, {(m.user, m.domain): m.flags for m in r.members})
        for r in engine.rooms()
    ]


def run(engine: ImcEngine, step: Step, tickets: list[InviteTicket]) -> Outcome | None:
    if step.fail_invite is not None:
        if not tickets:
            return None
        return engine.invite_failed(tickets[step.fail_invite % len(tickets)], 404, "Not Found")
    return engine.handle(
        ChatRequest(step.request_uri, f"sip:{step.sender}@d", "cid", step.body.encode(), None)
    )


def check_chat(engine: ImcEngine, step: Step, outcome: Outcome) -> None:
    if step.body.startswith("#") or step.fail_invite is not None or outcome.rc < 0:
        return
    room = engine.find_room(step.request_uri)
    assert room is not None
    sender_key = (step.sender.lower(), "d")
    expected = tuple(
        m.uri for m in room.members if not m.flags & MEMBER_INVITED and m.key != sender_key
    )
    got = outcome.messages[0].recipients if outcome.messages else ()
    assert got == expected
    invited = {m.uri for m in room.members if m.flags & MEMBER_INVITED}
    assert not invited & set(got)
    assert f"sip:{step.sender}@d".lower() not in {u.lower() for u in got}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=_configs, steps=_steps(with_modify=True))
def test_changes_replay_and_chat_reaches_the_right_members(
    config: EngineConfig, steps: list[Step]
) -> None:
    engine = ImcEngine(config)
    store = ReplayStore()
    tickets: list[InviteTicket] = []
    for step in steps:
        outcome = run(engine, step, tickets)
        if outcome is None:
            continue
        if outcome.rc < 0:
            assert outcome.status == 500 and outcome.reason
            assert outcome.changes == [] and outcome.messages == []
        else:
            assert (outcome.status, outcome.reason) == (200, "OK")
        tickets.extend(m.invite for m in outcome.messages if m.invite is not None)
        for change in outcome.changes:
            store.apply(change)
        check_chat(engine, step, outcome)

        fresh = ImcEngine(config)
        fresh.load(store.stored())
        assert snapshot(fresh) == snapshot(engine)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=_configs, steps=_steps(with_modify=False))
def test_without_modify_every_room_has_its_creator_as_sole_owner(
    config: EngineConfig, steps: list[Step]
) -> None:
    engine = ImcEngine(config)
    creators: dict[tuple[str, str], str] = {}
    tickets: list[InviteTicket] = []
    for step in steps:
        outcome = run(engine, step, tickets)
        if outcome is None:
            continue
        tickets.extend(m.invite for m in outcome.messages if m.invite is not None)
        for change in outcome.changes:
            if isinstance(change, RoomCreated):
                creators[(change.name.lower(), change.domain.lower())] = step.sender.lower()
            elif isinstance(change, RoomDestroyed):
                del creators[(change.name.lower(), change.domain.lower())]
        rooms = list(engine.rooms())
        assert {r.key for r in rooms} == set(creators)
        for room in rooms:
            owners = [m.user.lower() for m in room.members if m.flags & MEMBER_OWNER]
            assert owners == [creators[room.key]]
            # The creator stays at the head of the list.
            assert room.members[0].flags & MEMBER_OWNER
