"""The harness against the real thing: Kamailio 5.6.3 with imc behaves as imc-reference.md says.

These tests need no sidecar.  They prove the harness (sipp phones, the reference cfg, the
conversation) against Kamailio's own imc module, so that the differential test compares
the sidecar with something known to be right.  Missing kamailio/sipp binaries make them
fail, not skip.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from .conversation import (
    CREATED,
    DOMAIN,
    MAIN,
    MANAGER,
    REFERENCE_IP,
    VARIANT,
    Delivery,
    StepResult,
    Transcript,
    UserSpec,
    expectation_mismatches,
    make_user_agents,
    not_registered,
    record,
    reference_system,
    room,
)
from .harness.kamailio import find_kamailio, imc_reference
from .harness.sipua import UserAgents, find_sipp, free_port

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def main_run(tmp_path_factory: pytest.TempPathFactory) -> Transcript:
    return record(reference_system, tmp_path_factory.mktemp("ref-main"), MAIN)


@pytest.fixture(scope="module")
def variant_run(tmp_path_factory: pytest.TempPathFactory) -> Transcript:
    return record(reference_system, tmp_path_factory.mktemp("ref-variant"), VARIANT)


def _step(run: Transcript, step_id: str) -> StepResult:
    return run.by_id()[step_id]


def _only(result: StepResult) -> Delivery:
    assert len(result.deliveries) == 1, result.describe()
    return result.deliveries[0]


def test_binaries_are_installed() -> None:
    """The reference is Kamailio 5.6 (imc-reference.md): any other version fails here."""
    version = subprocess.run([find_kamailio(), "-v"], capture_output=True, text=True, timeout=30)
    assert "version: kamailio 5.6." in version.stdout, version.stdout
    sipp = subprocess.run([find_sipp(), "-v"], capture_output=True, text=True, timeout=30)
    assert "SIPp v" in sipp.stdout + sipp.stderr


def test_create_notice_room_style(main_run: Transcript) -> None:
    """§14.1: '*** Room was created' to alice only, From the room, 5.6 headers."""
    r = _step(main_run, "create")
    assert (r.status, r.reason) == (200, "ok")
    d = _only(r)
    assert d.recipient == "alice"
    assert d.body == CREATED
    assert d.from_uri == room("chat-1")
    assert d.to_uri == f"sip:alice@{DOMAIN}"
    assert d.content_type == "text/plain"
    assert d.supported == "kamailio/imc"
    assert d.in_reply_to == "step"


def test_join_broadcast_in_member_list_order(main_run: Transcript) -> None:
    """§14.2-3: creator first, then the newest member, down to the oldest."""
    r = _step(main_run, "join-via-manager")
    assert [d.recipient for d in r.deliveries] == ["alice", "carol", "bob"]
    assert {d.body for d in r.deliveries} == {"*** [carol] has joined the room"}
    assert {d.from_uri for d in r.deliveries} == {room("chat-1")}


def test_chat_fanout_skips_the_sender(main_run: Transcript) -> None:
    """§14.4: '[alice]: hello all' to carol and bob, with In-Reply-To; alice gets nothing."""
    r = _step(main_run, "chat-fanout")
    assert [(d.recipient, d.body) for d in r.deliveries] == [
        ("carol", "[alice]: hello all"),
        ("bob", "[alice]: hello all"),
    ]
    assert all(d.in_reply_to == "step" for d in r.deliveries)
    assert all(d.from_uri == room("chat-1") for d in r.deliveries)


def test_parse_errors_answer_500(main_run: Transcript) -> None:
    """§14.8: '#' and '# create' give rc -20: 500 'command error', nothing sent."""
    for step_id in ("hash-alone", "hash-space"):
        r = _step(main_run, step_id)
        assert (r.status, r.reason, r.deliveries) == (500, "command error", ())


def test_echo_style_notices(main_run: Transcript) -> None:
    """§2.3: #rooms, #help, unknown commands and 'already exists' echo the raw URIs."""
    rooms = _only(_step(main_run, "rooms"))
    assert (rooms.from_uri, rooms.to_uri) == (MANAGER, f"sip:alice@{DOMAIN}")
    again = _only(_step(main_run, "create-lower-case"))
    assert again.from_uri == f"sip:chat-x@{DOMAIN}:5060;transport=udp"
    assert again.to_uri == f"sip:alice@{DOMAIN}"
    # room style normalises the sender: no port, no parameters, case kept
    created = _only(_step(main_run, "create-mixed-case"))
    assert created.from_uri == f"sip:chat-X@{DOMAIN}"
    assert created.to_uri == f"sip:Alice@{DOMAIN}"


def test_invite_failure_notice_goes_to_the_invitee(main_run: Transcript) -> None:
    """§14.20 / B11: the failure notice goes to the unreachable invitee, with no
    Supported, Content-Type or In-Reply-To; the invitee is dropped from the room."""
    r = _step(main_run, "invite-zombie")
    notice = r.deliveries[-1]
    assert notice.recipient == "zombie"
    assert notice.body == not_registered("zombie")
    assert notice.from_uri == room("chat-p")
    assert (notice.content_type, notice.supported, notice.in_reply_to) == (None, None, "none")
    members = _only(_step(main_run, "members-after-failed-invites"))
    assert members.body == "Members:\n*[alice]\n[bob]"


def test_rooms_are_listed_in_hash_order(main_run: Transcript) -> None:
    """§4.11 / §9: every room, private ones too, in core_case_hash bucket order."""
    body = _only(_step(main_run, "rooms-final")).body
    assert body.startswith("Rooms:\n")
    listed = body.split("\n")[1:]
    assert sorted(listed) == sorted(
        ["[chat-1]", "[chat-y]", "[chat-b2]", "[chat-new]", "[chat-X]", "[chat-a]"]
    )


def test_main_conversation_matches_the_documentation(main_run: Transcript) -> None:
    problems = expectation_mismatches(main_run.results)
    assert not problems, "\n".join(problems) + "\n\n" + main_run.text()


def test_variant_conversation_matches_the_documentation(variant_run: Transcript) -> None:
    problems = expectation_mismatches(variant_run.results)
    assert not problems, "\n".join(problems) + "\n\n" + variant_run.text()


def test_reference_stops_cleanly(main_run: Transcript, variant_run: Transcript) -> None:
    """SIGTERM ends Kamailio with 0 (db_text supports the shutdown save, unlike sqlite)."""
    assert main_run.exit_codes == {"imc-reference": 0}, main_run.logs
    assert variant_run.exit_codes == {"imc-reference": 0}, variant_run.logs


def test_variant_extra_headers(variant_run: Transcript) -> None:
    """extra_hdrs is on every notice; the invite-failure notice carries nothing else."""
    extra = (("X-Imc-Test", "variant"),)
    for r in variant_run.results:
        for d in r.deliveries:
            assert d.extra_headers == extra, r.describe()
    notice = _step(variant_run, "invite-zombie").deliveries[-1]
    assert (notice.content_type, notice.supported, notice.in_reply_to) == (None, None, "none")


def test_db_text_keeps_rooms_across_a_clean_restart(tmp_path: Path) -> None:
    """§8.2: 5.6 wipes the tables at start and writes everything back at a clean stop."""
    listen = (REFERENCE_IP, free_port(REFERENCE_IP))
    first = imc_reference(tmp_path / "k", listen, domain=DOMAIN)
    agents = make_user_agents(
        UserAgents(tmp_path / "ua", listen, DOMAIN), (UserSpec("alice"), UserSpec("bob"))
    )
    first.start()
    try:
        agents.start()
        assert agents.send("alice", MANAGER, "#create chat-keep private").status == 200
        assert agents.send("alice", room("chat-keep"), "#add bob").status == 200
        rooms_db = tmp_path / "k" / "dbtext" / "imc_rooms"
        assert rooms_db.read_text().count("\n") == 1  # only the header while running
    finally:
        first.stop()
    assert first.returncode == 0, first.log_tail()
    assert "chat-keep" in rooms_db.read_text()
    assert rooms_db.read_text().splitlines()[1].endswith(":1")  # the private flag

    second = imc_reference(tmp_path / "k", listen, domain=DOMAIN, fresh_db=False)
    second.start()
    try:
        agents.register("alice")
        agents.register("bob")
        mark = agents.mark()
        assert agents.send("bob", room("chat-keep"), "#members").status == 200
        agents.settle()
        got = [m.text for m in agents.received("bob", since=mark)]
        assert len(got) == 1 and got[0].startswith("Members:\n")
        # the member order after a reload follows the DB's row order (§9): with db_text
        # the owner is no longer first, so only the set is stable
        assert sorted(got[0].split("\n")[1:]) == ["*[alice]", "[bob]"]
    finally:
        agents.stop()
        second.stop()
