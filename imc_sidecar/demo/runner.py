"""Play a scenario against a sidecar over real UDP, wait until it settles, report.

One event loop: each action is sent at its planned time from its user's `Phone`
without waiting for earlier ones (open loop, as real users do); a progress bar counts
final responses.  Afterwards the sidecar's admin RPC is polled until no MESSAGE it sent
is pending and every ghost invitation has run out, so all outcomes are final.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm  # type: ignore[import-untyped]

from ..rpc.caller import RpcClientError, call
from ..sip.message import Request
from .agent import BindError, Phone, Reply, open_phones
from .scenario import Scenario, ScenarioConfig, build_scenario
from .sidecar import SidecarStartError, StartedSidecar, start_sidecar
from .tally import Tally

__all__ = ["DemoError", "DemoOptions", "run_demo"]

SETTLE_POLL = 0.25  # s between two stats polls while settling
SETTLED_POLLS = 2  # consecutive calm polls: a notice about to be sent shows in between


class DemoError(Exception):
    """The demo cannot run; the message is one line for the user."""


@dataclass(frozen=True)
class DemoOptions:
    scenario: ScenarioConfig
    sip: tuple[str, int] | None = None  # None: 127.0.0.1:5090, or a free port with start
    rpc: str | None = None  # None: http://127.0.0.1:5092/RPC, or a free port with start
    token: str | None = None
    start: bool = False
    db: Path | None = None
    keep_running: bool = False
    summary: Path | None = None
    wait: bool = True
    wait_timeout: float = 40.0
    progress: bool | None = None  # None: only on a terminal


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _say(text: str) -> None:
    print(f"imc-sidecar demo: {text}", file=sys.stderr, flush=True)


class _Rpc:
    def __init__(self, url: str, token: str | None) -> None:
        self.url = url
        self.token = token

    async def call(self, method: str, *params: str) -> Any:
        result = await asyncio.to_thread(call, self.url, method, list(params),
                                         token=self.token, timeout=5.0)
        if result.fault is not None:
            raise RpcClientError(f"{method}: fault {result.fault[0]} {result.fault[1]}")
        return result.json

    async def stats(self) -> dict[str, int]:
        result = await self.call("stats.fetchn", "imc:")
        return {str(k): int(v) for k, v in result.items()} if isinstance(result, dict) else {}


def next_room_number(rooms: object, domain: str) -> int:
    """One past the highest chat-N of `domain` already there: a run never reuses a room."""
    pattern = re.compile(rf"sip:chat-(\d+)@{re.escape(domain)}", re.IGNORECASE)
    numbers = [
        int(match[1])
        for room in (rooms if isinstance(rooms, list) else [])
        if isinstance(room, dict) and (match := pattern.fullmatch(str(room.get("room", ""))))
    ]
    return max(numbers, default=0) + 1


async def run_demo(options: DemoOptions) -> int:
    started: StartedSidecar | None = None
    if options.start:
        rpc_hostport = _rpc_hostport(options.rpc) if options.rpc else None
        try:
            started = await asyncio.to_thread(start_sidecar, options.db, options.sip,
                                              rpc_hostport)
        except SidecarStartError as exc:
            raise DemoError(str(exc)) from None
        _say(f"started a sidecar (pid {started.process.pid}) on {started.db_url}, "
             f"log {started.log}")
    sip = started.sip if started else (options.sip or ("127.0.0.1", 5090))
    rpc_url = started.rpc_url if started else (options.rpc or "http://127.0.0.1:5092/RPC")
    kept = False
    try:
        code = await _drive(options, sip, _Rpc(rpc_url, options.token), started)
        kept = started is not None and options.keep_running
        return code
    finally:
        if started is not None:
            if kept:
                _say(f"the sidecar keeps running: pid {started.process.pid}, "
                     f"SIP udp:{sip[0]}:{sip[1]}, RPC {rpc_url}, log {started.log}")
                _say(f"IMC_DB_URL={started.db_url}")
            else:
                started.stop()
                _say(f"sidecar stopped; its database: IMC_DB_URL={started.db_url}")


def _rpc_hostport(url: str) -> tuple[str, int]:
    match = re.fullmatch(r"https?://([^/:]+):(\d+)(/.*)?", url)
    if match is None:
        raise DemoError(f"--rpc {url}: with --start, give http://HOST:PORT/RPC")
    return match[1], int(match[2])


async def _drive(options: DemoOptions, sip: tuple[str, int], rpc: _Rpc,
                 started: StartedSidecar | None) -> int:
    try:
        version = await rpc.call("core.version")
        existing = await rpc.call("imc.list_rooms")
        before = await rpc.stats()
    except RpcClientError as exc:
        raise DemoError(f"no sidecar answers the admin RPC ({exc}); start one "
                        "(scripts/serve) or run the demo with --start") from None
    config = replace(options.scenario,
                     first_room=next_room_number(existing, options.scenario.domain))
    try:
        scenario = build_scenario(config)
    except ValueError as exc:
        raise DemoError(str(exc)) from None
    tally = Tally(scenario)

    def on_message(phone: Phone, request: Request) -> None:
        tally.message_received(phone.uri, request.from_uri, request.body)

    try:
        phones = await open_phones(((p.uri, p.host, p.ghost) for p in scenario.people),
                                   on_message)
    except BindError as exc:
        raise DemoError(str(exc)) from None
    first, last = scenario.rooms[0].name, scenario.rooms[-1].name
    _say(f"{version} at udp:{sip[0]}:{sip[1]}: {len(scenario.actions)} requests planned "
         f"over {config.duration:g} s from {len(scenario.users)} users "
         f"({len(scenario.ghosts)} ghosts) in rooms {first}..{last}@{config.domain}")
    started_at = traffic_ended_at = _now()
    interrupted = False
    settled: bool | None = None
    after: dict[str, int] = {}
    try:
        try:
            await _play(scenario, phones, sip, tally, options.progress)
        except asyncio.CancelledError:  # Ctrl-C: report what was done so far
            interrupted = True
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        traffic_ended_at = _now()
        if options.wait and not interrupted:
            settled = await _settle(rpc, tally, options.wait_timeout, options.progress)
        try:
            after = await rpc.stats()
        except RpcClientError as exc:
            _say(f"cannot read the statistics at the end: {exc}")
    finally:
        tally.ghost_datagrams(sum(phones[p.uri].ignored for p in scenario.ghosts))
        for phone in phones.values():
            phone.close()
    summary = tally.summary({
        "started_at": started_at,
        "traffic_ended_at": traffic_ended_at,
        "ended_at": _now(),
        "sip": f"udp:{sip[0]}:{sip[1]}",
        "rpc": rpc.url,
        "db_url": started.db_url if started else None,
        "started_sidecar": started is not None,
        "sidecar_left_running": started is not None and options.keep_running,
        "settled": settled,
        "interrupted": interrupted,
        "sidecar_stats": {"before": before, "after": after},
    })
    print(tally.table(summary))
    if options.summary is not None:
        options.summary.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
        print(f"summary written to {options.summary}")
    if interrupted:
        return 130
    if settled is False:
        _say(f"the sidecar still had MESSAGEs pending after {options.wait_timeout:g} s: "
             "some outcomes in the summary may not be final")
        return 1
    return 0


async def _play(scenario: Scenario, phones: dict[str, Phone], sip: tuple[str, int],
                tally: Tally, progress: bool | None) -> None:
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()
    bar = tqdm(total=len(scenario.actions), desc="demo", unit="req", disable=_off(progress),
               file=sys.stderr, dynamic_ncols=True)
    refused = 0

    async def one(index: int) -> None:
        nonlocal refused
        action = scenario.actions[index]
        reply: Reply = await phones[action.sender].send(sip, action.room, action.body)
        tally.record(action, reply)
        refused += reply.status is None or reply.status >= 300
        bar.update()
        bar.set_postfix(refused=refused, texts=tally.chat_ok, refresh=False)

    began = loop.time()
    try:
        for index, action in enumerate(scenario.actions):
            delay = began + action.at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            task = loop.create_task(one(index))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        bar.close()


def _off(progress: bool | None) -> bool | None:
    return None if progress is None else not progress  # tqdm: None means "not a tty"


async def _settle(rpc: _Rpc, tally: Tally, timeout: float, progress: bool | None) -> bool:
    """Wait until nothing is pending in the sidecar, every ghost invitation ran out and
    the usage history holds every row (so a notebook run next sees all of it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    calm = 0
    bar = tqdm(desc="settling", bar_format="{desc}: {elapsed}{postfix}",
               disable=_off(progress), file=sys.stderr)
    try:
        while True:
            try:
                stats = await rpc.stats()
                pending = stats.get("imc.pending_deliveries", 0)
                unwritten = stats.get("imc.history_queued", 0)
            except RpcClientError as exc:
                _say(f"cannot read the sidecar's statistics: {exc}")
                return False
            ghosts = tally.invited(tally.ghost_uris)
            bar.set_postfix_str(f"MESSAGEs pending {pending}, "
                                f"ghost invitations running {ghosts}, "
                                f"history rows unwritten {unwritten}")
            calm = calm + 1 if pending == 0 and ghosts == 0 and unwritten == 0 else 0
            if calm >= SETTLED_POLLS:
                return True
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(SETTLE_POLL)
    finally:
        bar.close()
