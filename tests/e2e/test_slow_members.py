"""A member that never answers, or answers 486/503/404, costs only its own copies.

The real sidecar sends every copy through one outbound proxy, an `Answerer` that plays
the members behind it: two answer 200, `busy` 486, `down` 503, `gone` 404, and `dead`
never answers, so each copy to it is retransmitted until Timer F (64*T1 = 32 s; T1 has
no setting). The test stays well inside that time: it shows the healthy copies arrive
while the dead member's transactions are still open, the refusals are counted at once,
the dead copies are still in flight, and the room is unchanged (imc-reference §5:
Kamailio ignores failed chat deliveries, B22; only a failed invitation drops a member).
The dead copies are then counted as failed when the sidecar stops.

With delivery workers, each copy is reported as it ends (delivery/wire.py), so a copy
sharing a worker with the dead member is not held "pending" until its Timer F: the
workers case runs with usage history on (copies with a context) and off.
"""

from __future__ import annotations

import re
import socket
import statistics
import time

import pytest

from .conftest import StartSidecar
from .harness.sipua import free_port
from .sidecar_process import rpc_result, sidecar_args
from .sip_answerer import Answerer
from .sip_probe import message, status_line

pytestmark = pytest.mark.e2e

ROOM = "sip:chat-slow@example.org"
HEALTHY = ("alice", "bob", "carol")
FAILING = {"busy": "486 Busy Here", "down": "503 Service Unavailable", "gone": "404 Not Found"}
DEAD = "dead"
TEXTS = 6
SPACING = 0.4  # s between texts: the series outlasts the dead copies' first retransmissions
PROMPT = 2.0  # s: generous for a loaded machine, and far below Timer F (32 s)


def _answer(user: str) -> tuple[str | None, float]:
    if user == DEAD:
        return None, 0.0
    return FAILING.get(user, "200 OK"), 0.0


def _say(user: str, body: str, target: tuple[str, int]) -> str:
    """`user` sends `body` to the room; the status line of the sidecar's reply."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.settimeout(5)
        sender.bind(("127.0.0.1", 0))
        sender.sendto(message(ROOM, body, from_uri=f"sip:{user}@example.org"), target)
        return status_line(sender.recvfrom(65535)[0])


def _copies(answerer: Answerer, user: str, body: str) -> list[float]:
    """When the MESSAGEs to `user` with `body` reached the proxy (retransmissions too)."""
    start = f"MESSAGE sip:{user}@example.org ".encode()
    ending = b"\r\n\r\n" + body.encode()
    return [
        at
        for at, data in zip(answerer.arrived_at, answerer.received, strict=False)
        if data.startswith(start) and data.endswith(ending)
    ]


def _wait_for_stats(
    rpc_port: int, expected: dict[str, int], timeout: float = 3.0
) -> dict[str, int]:
    """The statistics named in `expected`, once they have those values (workers report
    shortly after the answers come) or, failing that, after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        stats = rpc_result(rpc_port, "stats.fetchn", ["imc:"])
        got = {name: stats[f"imc.{name}"] for name in expected}
        if got == expected or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("delivery_workers", "history"),
    [(0, 1), (2, 1), (2, 0)],
    ids=["main-process", "workers", "workers-no-history"],
)
def test_slow_and_dead_members_cost_only_their_own_copies(
    start_sidecar: StartSidecar, sqlite_db: str, delivery_workers: int, history: int
) -> None:
    """With history on, each chat text's copies carry a context, which workers account
    per fan-out; with it off they account copy by copy: both must hold."""
    answerer = Answerer(policy=_answer)
    rpc_port = free_port()
    try:
        sidecar = start_sidecar(sidecar_args(
            sqlite_db, free_port(), "--outbound-proxy", answerer.uri,
            "--rpc-http", f"127.0.0.1:{rpc_port}",
            "--delivery-workers", str(delivery_workers), "--delivery-port", "0",
            "--history", str(history),
        ))
        target = sidecar.addresses["udp"]
        assert _say("alice", "#create", target) == "SIP/2.0 200 OK"
        members = [*HEALTHY[1:], *FAILING, DEAD]
        for user in members:
            assert _say(user, "#join", target) == "SIP/2.0 200 OK"
        # The dead member joined last: of the joining notices only its own is unanswered.
        assert _wait_for_stats(rpc_port, {"pending_deliveries": 1}) == {"pending_deliveries": 1}
        rpc_result(rpc_port, "stats.reset_statistics", ["imc:"])

        latencies: list[float] = []
        for n in range(TEXTS):
            sent = time.monotonic()
            assert _say("alice", f"text {n}", target) == "SIP/2.0 200 OK"
            for user in HEALTHY[1:]:
                deadline = time.monotonic() + PROMPT
                while not (arrived := _copies(answerer, user, f"[alice]: text {n}")):
                    assert time.monotonic() < deadline, (
                        f"{user} had no copy of text {n} {PROMPT} s after it was sent"
                    )
                    time.sleep(0.005)
                latencies.append(arrived[0] - sent)
            time.sleep(max(0.0, sent + SPACING - time.monotonic()))
        # The healthy copies came while the dead member's first copy was still being
        # retransmitted (at 0.5 s, 1.5 s, 3.5 s, …): its transaction had not ended.
        assert len(_copies(answerer, DEAD, "[alice]: text 0")) >= 3
        summary = (
            f"latency of {len(latencies)} healthy copies: median "
            f"{statistics.median(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms"
        )
        print(summary)
        assert max(latencies) < PROMPT, summary

        # Each refusal is final: one copy per text, no retry, and each one counted.
        for user in FAILING:
            for n in range(TEXTS):
                assert len(_copies(answerer, user, f"[alice]: text {n}")) == 1, (user, n)
        # The room is unchanged: failed chat copies remove nobody (only invitations do).
        listed: object = rpc_result(rpc_port, "imc.list_members", [ROOM])["members"]
        everyone = (*HEALTHY, *FAILING, DEAD)
        assert isinstance(listed, list)
        assert sorted(listed) == sorted(f"sip:{user}@example.org" for user in everyone)

        expected = {
            "chat_messages": TEXTS,
            "sent_messages": TEXTS * len(members),
            "failed_deliveries": TEXTS * len(FAILING),
            "pending_deliveries": 1 + TEXTS,  # the dead member's, still retransmitted
            "refused_messages": 0,
        }
        assert _wait_for_stats(rpc_port, expected) == expected
        # And it still serves the members who failed.
        assert _say("gone", "still here", target) == "SIP/2.0 200 OK"

        # At a clean stop the dead member's copies (and the one just sent to it) are
        # given up after the grace period and counted as failed.
        assert sidecar.terminate() == 0
        unanswered = 1 + TEXTS + 1
        assert any(
            re.search(rf"\b{unanswered} MESSAGEs still unanswered after \d+ s: given up", line)
            for line in sidecar.lines
        ), sidecar.log_tail()
    finally:
        answerer.close()
