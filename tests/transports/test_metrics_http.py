"""`GET /metrics` in-process over real sockets (TCP and a unix socket): every statistic
as its Prometheus series, the histograms, the token rule of /RPC, and counters that a
`stats.reset_statistics` does not take back."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from metrics_text import Scrape, key_of, parse
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from rpc_support import ROOMS, Context

from imc_sidecar.rpc.http import make_app, start_http_server
from imc_sidecar.rpc.methods import build_registry
from imc_sidecar.settings import RpcAddress

REGISTRY = build_registry()
TOKEN = "0123456789abcdef0123"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def served() -> AsyncIterator[tuple[Context, TestClient]]:  # type: ignore[type-arg]
    context = Context(ROOMS)
    client = TestClient(TestServer(make_app(REGISTRY, context, TOKEN)))
    await client.start_server()
    yield context, client
    await client.close()


async def _scrape(client: TestClient) -> Scrape:  # type: ignore[type-arg]
    response = await client.get("/metrics", headers=BEARER)
    assert response.status == 200
    assert response.headers["Content-Type"] == CONTENT_TYPE_LATEST
    return parse(await response.text())


async def test_every_statistic_is_a_series_with_its_value(
    served: tuple[Context, TestClient],  # type: ignore[type-arg]
) -> None:
    context, client = served
    stats = context.stats
    stats.received_messages = 11
    stats.commands["join"] = 2
    stats.count_limited("rate")
    scrape = await _scrape(client)
    for stat in stats:
        assert scrape.samples[key_of(stat.name)] == stat.value, stat.name
    assert scrape.samples["imc_sidecar_active_rooms"] == 3
    assert scrape.samples["imc_sidecar_members"] == 5
    assert scrape.samples["imc_sidecar_received_messages_total"] == 11
    assert scrape.samples['imc_sidecar_commands_total{command="join"}'] == 2
    assert scrape.samples['imc_sidecar_limit_refusals_total{limit="rate"}'] == 1
    assert scrape.samples["imc_sidecar_db_reachable"] == 1
    assert scrape.types["imc_sidecar_received_messages"] == "counter"
    assert scrape.types["imc_sidecar_active_rooms"] == "gauge"
    assert "process_open_fds" in scrape.samples  # the process collector


async def test_histograms_show_what_was_observed(
    served: tuple[Context, TestClient],  # type: ignore[type-arg]
) -> None:
    context, client = served
    for seconds in (0.004, 0.004, 0.2, 45.0):
        context.stats.fanout_seconds.observe(seconds)
    context.stats.db_write_seconds.observe(0.001)
    scrape = await _scrape(client)
    assert scrape.types["imc_sidecar_fanout_seconds"] == "histogram"
    fanout = "imc_sidecar_fanout_seconds"
    assert scrape.histogram_count(fanout) == 4
    assert scrape.samples[f"{fanout}_sum"] == pytest.approx(45.208)
    assert scrape.samples[f'{fanout}_bucket{{le="0.005"}}'] == 2
    assert scrape.samples[f'{fanout}_bucket{{le="0.25"}}'] == 3
    assert scrape.samples[f'{fanout}_bucket{{le="30.0"}}'] == 3
    assert scrape.samples[f'{fanout}_bucket{{le="+Inf"}}'] == 4
    assert scrape.histogram_count("imc_sidecar_db_write_seconds") == 1
    assert scrape.samples['imc_sidecar_db_write_seconds_bucket{le="0.0005"}'] == 0


async def test_a_reset_zeroes_the_rpc_counters_but_not_the_prometheus_ones(
    served: tuple[Context, TestClient],  # type: ignore[type-arg]
) -> None:
    context, client = served
    context.stats.received_messages = 7
    reset = b'{"jsonrpc":"2.0","method":"stats.reset_statistics","params":["all"],"id":1}'
    assert (await client.post("/RPC", data=reset, headers=BEARER)).status == 200
    context.stats.received_messages += 1
    fetch = b'{"jsonrpc":"2.0","method":"stats.fetchn","params":["all"],"id":2}'
    response = await client.post("/RPC", data=fetch, headers=BEARER)
    assert json.loads(await response.read())["result"]["imc.received_messages"] == 1
    scrape = await _scrape(client)
    assert scrape.samples["imc_sidecar_received_messages_total"] == 8


async def test_metrics_needs_the_token_as_rpc_does(
    served: tuple[Context, TestClient],  # type: ignore[type-arg]
) -> None:
    _, client = served
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {TOKEN}"}):
        response = await client.get("/metrics", headers=headers)
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert "imc_sidecar" not in await response.text()
    assert (await client.post("/metrics", headers=BEARER)).status == 405
    assert (await client.get("/metrics/", headers=BEARER)).status == 404


async def test_metrics_without_a_token_on_a_unix_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "http.sock")
    server = await start_http_server(RpcAddress("unix", path=path), REGISTRY, Context(ROOMS),
                                     None)
    try:
        connector = aiohttp.UnixConnector(path=path)
        async with aiohttp.ClientSession(connector=connector) as session, \
                session.get("http://sidecar/metrics") as response:
            assert response.status == 200
            scrape = parse(await response.text())
    finally:
        await server.close()
    assert scrape.samples["imc_sidecar_active_rooms"] == 3
