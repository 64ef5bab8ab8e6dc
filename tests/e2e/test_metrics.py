"""`GET /metrics` on the real sidecar: after commands and chat with real SIP peers, the
Prometheus exposition (read with prometheus_client's parser) shows every `imc:`
statistic with the value the JSON-RPC shows, one fan-out observation per chat text and
one write observation per committed command, the database as reachable, and it
refuses a scrape without the bearer token, as /RPC does."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import NamedTuple

import pytest
from metrics_text import Scrape, key_of, parse
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from imc_sidecar.metrics import SERIES

from .conftest import StartSidecar
from .harness.sipua import free_port
from .sidecar_process import sidecar_args
from .sip_answerer import Answerer
from .sip_probe import UdpProbe, message, status_line

pytestmark = pytest.mark.e2e

DOMAIN = "metrics.test"
ROOM = f"sip:chat-metrics@{DOMAIN}"
TOKEN = "metrics-e2e-token-0123456789"
OK = "SIP/2.0 200 OK"


class Running(NamedTuple):
    target: tuple[str, int]  # the sidecar's UDP address
    base: str  # http://127.0.0.1:port
    probe: UdpProbe  # sends as any user
    workers: int  # delivery workers


@pytest.fixture
def running(
    request: pytest.FixtureRequest, start_sidecar: StartSidecar, sqlite_db: str
) -> Iterator[Running]:
    """A sidecar with a token; `request.param` delivery workers (default 0)."""
    answerer, probe = Answerer(), UdpProbe()  # the outbound proxy answers every copy 200
    rpc_port = free_port()
    workers = getattr(request, "param", 0)
    sidecar = start_sidecar(
        sidecar_args(sqlite_db, free_port(), "--outbound-proxy", answerer.uri,
                     "--rpc-http", f"127.0.0.1:{rpc_port}", "--delivery-workers",
                     str(workers), "--delivery-port", "0"),
        env={"IMC_RPC_TOKEN": TOKEN},
    )
    yield Running(sidecar.addresses["udp"], f"http://127.0.0.1:{rpc_port}", probe, workers)
    probe.close()
    answerer.close()


def _send(running: Running, user: str, body: str) -> str:
    request = message(ROOM, body, from_uri=f"sip:{user}@{DOMAIN}")
    return status_line(running.probe.exchange(request, running.target))


def _get(url: str, token: str | None = TOKEN) -> tuple[int, str, str]:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def _scrape(running: Running) -> Scrape:
    status, content_type, text = _get(f"{running.base}/metrics")
    assert status == 200 and content_type == CONTENT_TYPE_LATEST
    return parse(text)


def _rpc(running: Running, method: str, *params: object) -> dict[str, int]:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    request = urllib.request.Request(f"{running.base}/RPC", body.encode(),
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        result: dict[str, int] = json.loads(response.read())["result"]
    return result


def _statistics(running: Running) -> dict[str, int]:
    """`stats.fetchn all` by bare name."""
    return {name.split(".", 1)[1]: value
            for name, value in _rpc(running, "stats.fetchn", "all").items()}


def _settled(running: Running) -> tuple[dict[str, int], Scrape]:
    """The statistics and a scrape taken between two equal readings of them (the
    history writer flushes in the background, so values may move until it is done)."""
    deadline = time.monotonic() + 10
    while True:
        before = _statistics(running)
        scrape = _scrape(running)
        if _statistics(running) == before:
            return before, scrape
        assert time.monotonic() < deadline, "the statistics kept changing"
        time.sleep(0.05)


def _wait_for_fanouts(running: Running, count: int) -> Scrape:
    deadline = time.monotonic() + 10
    while True:
        scrape = _scrape(running)
        if scrape.histogram_count("imc_sidecar_fanout_seconds") >= count:
            return scrape
        assert time.monotonic() < deadline, "fan-outs not all answered"
        time.sleep(0.05)


# Copies sent from the main process, or by a delivery worker (its answers come back as
# one result per share: the other path to the end of a fan-out).
@pytest.mark.parametrize("running", [0, 1], indirect=True, ids=["main", "worker"])
def test_metrics_match_the_rpc_statistics(running: Running) -> None:
    commands = [("alice", "#create"), ("bob", "#join"), ("carol", "#join")]
    for user, body in commands:  # one after the other: one write transaction each
        assert _send(running, user, body) == OK
    assert _send(running, "bob", "#members") == OK  # reads only: no write
    texts = [("alice", f"hello {n}") for n in range(5)] + [("carol", "hi"), ("bob", "yo")]
    for user, body in texts:
        assert _send(running, user, body) == OK

    _wait_for_fanouts(running, len(texts))
    stats, scrape = _settled(running)
    # Every statistic has its series (a new one without a metric fails here) ...
    missing = sorted(name for name in stats
                     if name not in SERIES or key_of(name) not in scrape.samples)
    assert missing == []
    # ... with the RPC's value: nothing was reset, so counters agree too.
    assert {name: scrape.samples[key_of(name)] for name in stats} == stats
    assert stats["chat_messages"] == len(texts) and stats["cmd_join"] == 2
    assert stats["delivery_workers"] == running.workers
    assert scrape.samples["imc_sidecar_db_reachable"] == 1
    assert scrape.histogram_count("imc_sidecar_fanout_seconds") == len(texts)
    assert scrape.histogram_count("imc_sidecar_db_write_seconds") == len(commands)
    # Every copy was answered at once by the proxy on loopback: well under a second.
    assert scrape.samples['imc_sidecar_fanout_seconds_bucket{le="1.0"}'] == len(texts)

    # A reset zeroes what kamcmd shows; Prometheus' counters go on from where they were.
    sent = stats["sent_messages"]
    assert _rpc(running, "stats.reset_statistics", "all") == {}
    assert _send(running, "alice", "after the reset") == OK
    _wait_for_fanouts(running, len(texts) + 1)
    stats, scrape = _settled(running)
    assert 0 < stats["sent_messages"] < sent
    assert scrape.samples["imc_sidecar_sent_messages_total"] == sent + stats["sent_messages"]
    assert scrape.samples["imc_sidecar_chat_messages_total"] == len(texts) + 1
    assert stats["chat_messages"] == 1
    assert scrape.samples["imc_sidecar_active_rooms"] == stats["active_rooms"] == 1


def test_metrics_need_the_token(running: Running) -> None:
    for token in (None, "wrong"):
        status, _, text = _get(f"{running.base}/metrics", token)
        assert status == 401 and "imc_sidecar" not in text
    status, _, _ = _get(f"{running.base}/metrics")
    assert status == 200
