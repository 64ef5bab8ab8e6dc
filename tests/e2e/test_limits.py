"""Limits on the real sidecar: a flooding sender is refused past its rate while another
sender in the same room is served, and the room limits refuse with their reasons and
change nothing.  Every refusal is counted."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import NamedTuple

import pytest

from .conftest import StartSidecar
from .harness.sipua import free_port
from .sidecar_process import rpc_result, sidecar_args
from .sip_answerer import Answerer
from .sip_probe import UdpProbe, message, status_line

pytestmark = pytest.mark.e2e

DOMAIN = "limits.test"


def _room(name: str) -> str:
    return f"sip:{name}@{DOMAIN}"


def _send(probe: UdpProbe, target: tuple[str, int], ruri: str, body: str, user: str) -> bytes:
    return probe.exchange(message(ruri, body, from_uri=f"sip:{user}@{DOMAIN}"), target)


def _header(reply: bytes, name: str) -> str | None:
    for line in reply.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


def _stats(rpc_port: int) -> dict[str, int]:
    return rpc_result(rpc_port, "stats.fetchn", ["imc:"])


class Setup(NamedTuple):
    target: tuple[str, int]  # the sidecar's UDP address
    rpc_port: int
    answerer: Answerer  # the outbound proxy: every notice and copy ends there
    probe: UdpProbe  # sends as any user


@pytest.fixture
def limited(start_sidecar: StartSidecar, sqlite_db: str) -> Iterator[Callable[..., Setup]]:
    """`limited(*flags)`: a sidecar started with these limit flags, and its peers."""
    answerer, probe = Answerer(), UdpProbe()

    def start(*flags: str) -> Setup:
        rpc_port = free_port()
        sidecar = start_sidecar(sidecar_args(
            sqlite_db, free_port(), "--outbound-proxy", answerer.uri,
            "--rpc-http", f"127.0.0.1:{rpc_port}", *flags,
        ))
        return Setup(sidecar.addresses["udp"], rpc_port, answerer, probe)

    yield start
    probe.close()
    answerer.close()


def test_a_flooding_sender_is_refused_while_another_is_served(
    limited: Callable[..., Setup],
) -> None:
    target, rpc_port, answerer, probe = limited("--sender-rate", "1", "--sender-burst", "5")
    room = _room("chat-flood")
    for user, body in (("alice", "#create"), ("bob", "#join")):
        assert status_line(_send(probe, target, room, body, user)) == "SIP/2.0 200 OK"
    replies = [_send(probe, target, room, f"spam {n}", "alice") for n in range(12)]
    statuses = [status_line(reply) for reply in replies]
    # The burst passes (a token or so may refill while it is sent), then refusals.
    passed = statuses.count("SIP/2.0 200 OK")
    assert 5 <= passed <= 7 and statuses[:5] == ["SIP/2.0 200 OK"] * 5
    refused = [r for r in replies if status_line(r) == "SIP/2.0 503 Too Many Messages"]
    assert len(refused) == 12 - passed
    assert all(int(_header(r, "Retry-After") or "0") >= 1 for r in refused)
    # bob, in the same room, is not held back by alice's flood.
    for n in range(5):
        reply = _send(probe, target, room, f"calm {n}", "bob")
        assert status_line(reply) == "SIP/2.0 200 OK"
    stats = _stats(rpc_port)
    assert stats["imc.rate_limited_messages"] == 12 - passed
    assert stats["imc.chat_messages"] == passed + 5
    # One notice tells alice to slow down, however many texts were refused.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        slow = [m for m in list(answerer.received) if b"too fast" in m]
        texts = [m for m in list(answerer.received) if b"]: calm 4" in m]
        if slow and texts:
            break
        time.sleep(0.02)
    assert len(slow) == 1 and b"To: <sip:alice@" in slow[0]


def test_room_limits_refuse_with_their_reasons(limited: Callable[..., Setup]) -> None:
    target, rpc_port, _, probe = limited(
        "--max-members-per-room", "3", "--max-rooms-per-user", "2", "--max-rooms", "3"
    )

    def command(user: str, room: str, body: str) -> str:
        return status_line(_send(probe, target, _room(room), body, user))

    ok = "SIP/2.0 200 OK"
    assert command("alice", "chat-a", "#create") == ok
    assert command("bob", "chat-a", "#join") == ok
    assert command("alice", "chat-a", "#invite carol") == ok
    assert command("dave", "chat-a", "#join") == "SIP/2.0 500 Room is full (limit 3 members)"
    assert command("alice", "chat-b", "#create") == ok
    assert command("bob", "chat-c", "#create") == ok
    assert (command("bob", "chat-b", "#join")
            == "SIP/2.0 500 User is in too many rooms (limit 2)")
    assert (command("dave", "chat-d", "#create")
            == "SIP/2.0 500 Too many rooms on this server (limit 3)")
    # Nothing changed for the refusals, and the rooms still work.
    rooms = rpc_result(rpc_port, "imc.list_rooms", [])
    assert sorted(room["room"] for room in rooms) == [  # type: ignore[index]
        _room("chat-a"), _room("chat-b"), _room("chat-c")
    ]
    members = rpc_result(rpc_port, "imc.list_members", [_room("chat-a")])["members"]
    assert sorted(members) == [  # type: ignore[call-overload]
        f"sip:{user}@{DOMAIN}" for user in ("alice", "bob", "carol")
    ]
    assert command("bob", "chat-a", "hello") == ok
    stats = _stats(rpc_port)
    assert (stats["imc.room_full_refusals"], stats["imc.user_rooms_refusals"],
            stats["imc.rooms_limit_refusals"]) == (1, 1, 1)
