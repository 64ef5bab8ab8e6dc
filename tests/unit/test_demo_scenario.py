"""The demo's script (imc_sidecar/demo/scenario.py): deterministic, heavy-tailed, varied,
and right about what the sidecar answers (checked against the real chat engine)."""

from __future__ import annotations

import hashlib
import itertools
import os
import subprocess
import sys
from collections import Counter
from dataclasses import replace

import pytest

from imc_sidecar.demo.agent import Reply
from imc_sidecar.demo.scenario import (
    INVITED,
    KINDS,
    Action,
    Rooms,
    Scenario,
    ScenarioConfig,
    build_scenario,
    host_addresses,
)
from imc_sidecar.demo.tally import Tally
from imc_sidecar.imc.engine import EngineConfig, ImcEngine
from imc_sidecar.imc.model import MEMBER_INVITED, MEMBER_OWNER
from imc_sidecar.imc.outcome import ChatRequest, InviteTicket

SEEDS = (1, 2, 3, 4, 5)
TIMER_F = 32.0


def _digest(scenario: Scenario) -> str:
    return hashlib.sha256(repr((scenario.people, scenario.rooms, scenario.actions))
                          .encode()).hexdigest()


# -- determinism ---------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_script() -> None:
    config = ScenarioConfig(seed=42)
    assert build_scenario(config) == build_scenario(config)


def test_another_seed_gives_another_script() -> None:
    first = build_scenario(ScenarioConfig(seed=1))
    assert build_scenario(ScenarioConfig(seed=2)).actions != first.actions


def test_the_script_does_not_depend_on_the_hash_seed() -> None:
    # Iterating a set of strings would follow PYTHONHASHSEED: run it in two processes.
    code = (
        "from imc_sidecar.demo.scenario import ScenarioConfig, build_scenario\n"
        "import hashlib\n"
        "s = build_scenario(ScenarioConfig(seed=9, duration=20))\n"
        "print(hashlib.sha256(repr((s.people, s.rooms, s.actions)).encode()).hexdigest())\n"
    )
    digests = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": hash_seed}).stdout.strip()
        for hash_seed in ("1", "2")
    }
    assert digests == {_digest(build_scenario(ScenarioConfig(seed=9, duration=20)))}


# -- shape ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_a_few_users_and_rooms_do_most_of_the_talking(seed: int) -> None:
    scenario = build_scenario(ScenarioConfig(seed=seed))
    texts = [a for a in scenario.actions if a.kind == "chat" and a.expect == 200]
    by_sender = Counter(a.sender for a in texts)
    by_room = Counter(a.room for a in texts)
    top_users = sum(n for _, n in by_sender.most_common(len(scenario.users) // 5))
    top_rooms = sum(n for _, n in by_room.most_common(len(scenario.rooms) // 4))
    assert top_users >= 0.5 * len(texts)  # the top 20 % of users say half or more
    assert top_rooms >= 0.5 * len(texts)  # the top 25 % of rooms carry half or more
    # ... and the quiet majority still says something.
    assert len(by_sender) >= len(scenario.users) // 2


@pytest.mark.parametrize("seed", SEEDS)
def test_every_kind_of_action_shows_up(seed: int) -> None:
    scenario = build_scenario(ScenarioConfig(seed=seed))
    kinds = Counter(a.kind for a in scenario.actions)
    assert set(kinds) == set(KINDS)
    assert kinds["chat"] > sum(kinds.values()) / 2  # mostly texts
    creates = [a for a in scenario.actions if a.kind == "create"]
    assert len(creates) == scenario.config.rooms
    assert any(a.private and a.body.endswith(" private") for a in creates)
    assert not all(a.private for a in creates)
    ghost_invites = [a for a in scenario.actions if a.ghost]
    assert sorted(str(a.target) for a in ghost_invites) == sorted(p.uri for p in scenario.ghosts)
    assert any(a.kind == "modify" and a.role == "admin" for a in scenario.actions)
    assert any(a.kind == "accept" and a.expect == 200 for a in scenario.actions)
    refused = [a for a in scenario.actions if a.expect != 200]
    assert {a.kind for a in refused} == {"chat", "remove", "accept"}
    assert len(refused) <= 0.05 * len(scenario.actions)  # a few, not a flood


@pytest.mark.parametrize("seed", SEEDS)
def test_the_timeline(seed: int) -> None:
    config = ScenarioConfig(seed=seed, duration=30)
    actions = build_scenario(config).actions
    times = [a.at for a in actions]
    assert times == sorted(times)
    assert all(b - a >= 0.009 for a, b in itertools.pairwise(times))
    assert times[-1] < config.duration + 1
    assert 0.5 * config.rate * config.duration < len(actions) < 2 * config.rate * config.duration
    # Ghost invitations in the first third: their 32 s timeouts end soon after the run.
    assert all(a.at <= config.duration / 3 + 1 for a in actions if a.ghost)
    # Rooms first, each created before anything is sent to it (#rooms/#help aside).
    created: dict[str, float] = {}
    for a in actions:
        if a.kind == "create":
            created[a.room] = a.at
        elif a.kind not in ("rooms", "help", "unknown"):
            assert a.room in created, a


def test_users_live_on_their_own_loopback_addresses() -> None:
    scenario = build_scenario(ScenarioConfig(users=300, ghosts=5, network="127.78.0.0/16"))
    hosts = [p.host for p in scenario.people]
    assert len(set(hosts)) == len(hosts) == 305
    assert all(h.startswith("127.78.") and h.split(".")[3] not in ("0", "255") for h in hosts)
    names = [p.name for p in scenario.people]
    assert len(set(names)) == len(names)
    assert all(p.uri == f"sip:{p.name}@{p.host}" and p.name == p.name.lower()
               for p in scenario.people)
    assert [p.ghost for p in scenario.people] == [False] * 300 + [True] * 5


def test_host_addresses() -> None:
    assert host_addresses("127.0.0.0/30", 2) == ["127.0.0.2", "127.0.0.3"]  # not 127.0.0.1
    assert host_addresses("127.9.0.0/23", 255)[-1] == "127.9.1.1"  # .0 and .255 skipped
    with pytest.raises(ValueError, match="loopback"):
        host_addresses("10.0.0.0/16", 1)
    with pytest.raises(ValueError, match="fewer than"):
        host_addresses("127.5.5.0/29", 8)


@pytest.mark.parametrize(
    ("change", "message"),
    [({"users": 1}, "--users"), ({"rooms": 0}, "--rooms"), ({"duration": 0}, "--duration"),
     ({"network": "192.168.0.0/16"}, "--net"), ({"domain": "Demo.Test"}, "--domain")],
)
def test_bad_configs_are_refused(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_scenario(replace(ScenarioConfig(), **change))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "config",
    [ScenarioConfig(users=2, ghosts=0, rooms=1, duration=5),
     ScenarioConfig(users=3, ghosts=1, rooms=2, duration=2, rate=30),
     ScenarioConfig(users=5, ghosts=2, rooms=3, duration=8, first_room=41)],
)
def test_small_configs_work(config: ScenarioConfig) -> None:
    scenario = build_scenario(config)
    assert scenario.actions
    assert scenario.rooms[0].name == f"chat-{config.first_room}"
    # Every real invitation gets its answer, and two of them are one of each.
    invites = [a for a in scenario.actions if a.kind == "invite" and not a.ghost]
    answers = [a for a in scenario.actions if a.kind in ("accept", "reject") and a.expect == 200]
    assert len(answers) == len(invites)
    if len(answers) >= 2:
        assert {a.kind for a in answers} == {"accept", "reject"}


# -- predictions, checked against the chat engine itself -------------------------------------


def _replay(scenario: Scenario) -> tuple[list[tuple[Action, int, str]], ImcEngine]:
    """Every action through the real (pure) engine, in order; ghost invitations fail
    Timer F after they were sent, as in the sidecar."""
    engine = ImcEngine(EngineConfig())
    ghosts = [p.uri for p in scenario.ghosts]
    timeouts: list[tuple[float, InviteTicket]] = []
    results = []
    for n, action in enumerate(scenario.actions):
        while timeouts and timeouts[0][0] <= action.at:
            engine.invite_failed(timeouts.pop(0)[1], 408, "Request Timeout")
        request = ChatRequest(action.room, action.sender, f"call-{n}", action.body.encode(),
                              "text/plain")
        outcome = engine.handle(request)
        results.append((action, outcome.status, outcome.reason))
        for message in outcome.messages:
            if message.invite is not None and message.invite.invitee_uri in ghosts:
                timeouts.append((action.at + TIMER_F, message.invite))
    for _, ticket in timeouts:
        engine.invite_failed(ticket, 408, "Request Timeout")
    return results, engine


@pytest.mark.parametrize("seed", SEEDS)
def test_the_engine_answers_what_the_script_expects(seed: int) -> None:
    scenario = build_scenario(ScenarioConfig(seed=seed))
    results, engine = _replay(scenario)
    wrong = [(a.at, a.kind, a.body, a.expect, status, reason)
             for a, status, reason in results if status != a.expect]
    assert wrong == []
    # The model the runner keeps ends where the engine does.
    model = Rooms()
    for action, status, _ in results:
        if status == 200:
            model.apply(action)
    for ghost in scenario.ghosts:
        for room in list(model.live.values()):
            model.invitation_failed(room.uri, ghost.uri)
    engine_rooms = {
        room.uri: (room.private, room.members[0].uri,
                   sorted((m.uri, bool(m.flags & MEMBER_INVITED)) for m in room.members))
        for room in engine.rooms()
    }
    model_rooms = {
        room.uri: (room.private, room.owner,
                   sorted((uri, role == INVITED) for uri, role in room.members.items()))
        for room in model.live.values()
    }
    assert model_rooms == engine_rooms
    assert all(room.members[0].flags & MEMBER_OWNER for room in engine.rooms())


def test_the_tally_counts_outcomes_not_plans() -> None:
    scenario = build_scenario(ScenarioConfig(seed=3, duration=20))
    results, _ = _replay(scenario)
    tally = Tally(scenario)
    texts = [a for a in scenario.actions if a.kind == "chat"]
    lost = texts[0]  # one text goes unanswered: counted apart, listed as a mismatch
    for action, status, reason in results:
        if action is lost:
            tally.record(action, Reply(None, "Request Timeout", 6, 32.0))
        else:
            tally.record(action, Reply(status, reason, 0, 0.001))
    ghost = scenario.ghosts[0]
    invite = next(a for a in scenario.actions if a.ghost and a.target == ghost.uri)
    tally.message_received(invite.sender, invite.room,
                           f"{ghost.handle} is not registered. ".encode())
    tally.message_received(scenario.users[0].uri, scenario.rooms[0].uri, b"[bob]: hi")
    summary = tally.summary({"sip": "udp:127.0.0.1:5090"})

    ok = [a for a, status, _ in results if a.kind == "chat" and status == 200 and a is not lost]
    assert summary["sip"] == "udp:127.0.0.1:5090"
    assert summary["chat_ok"] == len(ok)
    assert summary["chat_ok_by_room"] == dict(Counter(a.room for a in ok).most_common())
    assert sum(summary["chat_ok_by_sender"].values()) == len(ok)
    assert summary["chat_refused"] == sum(
        1 for a, status, _ in results if a.kind == "chat" and status >= 300)
    assert summary["chat_unanswered"] == 1
    assert summary["mismatch_count"] == 1 and summary["mismatches"][0]["status"] is None
    assert summary["requests"]["sent"] == len(scenario.actions)
    assert summary["requests"]["unanswered"] == 1
    commands = Counter(a.kind for a in scenario.actions if a.kind != "chat")
    assert summary["commands_sent"] == {k: n for k, n in commands.items() if n}
    assert summary["rooms_created"]["total"] == scenario.config.rooms
    assert summary["rooms_created"]["private"] == sum(r.private for r in scenario.rooms)
    invitations = summary["invitations"]
    assert invitations["unanswered"] == len(scenario.ghosts)
    assert invitations["expired"] == 1
    assert invitations["sent"] == sum(1 for a in scenario.actions if a.kind == "invite")
    assert summary["received"]["chat_copies"] == 1
    assert ghost.uri not in summary["rooms"][invite.room]["member_uris"]
    # The table has a row for every kind that was sent.
    rows = {line.split()[0]: line.split()[1] for line in tally.table(summary).splitlines()
            if line.startswith(("#", "texts", "mistyped"))}
    assert rows.pop("texts") == str(len(texts))
    assert rows.pop("mistyped") == str(commands.pop("unknown"))
    assert rows == {f"#{kind}": str(n) for kind, n in commands.items()}
