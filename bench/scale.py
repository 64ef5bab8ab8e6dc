"""Scale figures: start-up time and memory with many rooms, ``imc.list_rooms`` over HTTP.

The SQLite files are made by the sidecar (``python -m imc_sidecar db create``: Kamailio's
schema) and filled directly with ``sqlite3``: ``R`` rooms ``chat-<n>@bench.test`` of 10
members each (the first one owner).  For each size the sidecar is started cold:

* start-up: from ``exec`` to the first answered SIP OPTIONS (the sidecar loads every
  room before it opens its SIP socket);
* RSS: VmRSS once it answers, and VmHWM (the peak, loading included);
* ``imc.list_rooms``: wall time of ``POST /RPC`` until the whole JSON reply is read,
  best and median of several calls, on the largest size.

RSS per million members is the slope of a least-squares line through RSS against the
number of members over all measured sizes (the fixed cost of the interpreter and
libraries is the intercept), and the RSS at one million members measured directly.

For reference, Kamailio 5.6 imc (db_text, the engine cfg) is started with a few small
sizes: its start-up grows with rooms × members (:func:`kamailio_points`).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import statistics
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e.harness.sipua import free_port

from .layout import DOMAIN, create_sqlite
from .procs import descendants, pss_kib, status_kib
from .runner import wait_until_quiet
from .systems import KamailioImc, Sidecar

MEMBERS_PER_ROOM = 10


@dataclass
class ScalePoint:
    rooms: int
    members: int
    db_build_s: float
    startup_s: float
    rss_mib: float
    peak_rss_mib: float


@dataclass
class KamailioPoint:
    rooms: int
    members: int
    startup_s: float
    pss_mib: float


@dataclass
class ScaleResult:
    points: list[ScalePoint] = field(default_factory=list)
    kamailio: list[KamailioPoint] = field(default_factory=list)
    list_rooms_rooms: int = 0
    list_rooms_s: list[float] = field(default_factory=list)
    list_rooms_bytes: int = 0
    list_rooms_count: int = 0
    slope_mib_per_million: float | None = None
    intercept_mib: float | None = None
    commands: list[str] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def build_db(path: Path, rooms: int, per_room: int = MEMBERS_PER_ROOM) -> float:
    began = time.monotonic()
    create_sqlite(path)
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("PRAGMA synchronous = OFF")
        db.executemany(
            "INSERT INTO imc_rooms (name, domain, flag) VALUES (?, ?, 0)",
            ((f"chat-{n}", DOMAIN) for n in range(rooms)),
        )
        db.executemany(
            "INSERT INTO imc_members (username, domain, room, flag) VALUES (?, ?, ?, ?)",
            (
                (f"u{n}x{j}", DOMAIN, f"sip:chat-{n}@{DOMAIN}", 1 if j == 0 else 0)
                for n in range(rooms)
                for j in range(per_room)
            ),
        )
    return time.monotonic() - began


def list_rooms(port: int) -> tuple[float, int, int]:
    body = json.dumps({"jsonrpc": "2.0", "method": "imc.list_rooms", "id": 1}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/RPC",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    began = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as reply:
        data = reply.read()
    took = time.perf_counter() - began
    result = json.loads(data).get("result", [])
    return took, len(data), len(result)


def fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least squares y = a + b x; returns (a, b)."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
    return my - b * mx, b


def kamailio_points(
    workdir: Path, sizes: list[int], log: Any, quiet: bool = True
) -> list[KamailioPoint]:
    """Kamailio 5.6 imc on db_text (the bench's engine cfg) with the same rooms, for scale.

    imc reads each room's members with its own query, and db_text answers every query
    with a scan of the whole members table, so start-up grows with rooms x members.
    """
    points = []
    for rooms in sizes:
        room_rows = [(f"chat-{n}", DOMAIN, 0) for n in range(rooms)]
        member_rows = [
            (f"u{n}x{j}", DOMAIN, f"sip:chat-{n}@{DOMAIN}", 1 if j == 0 else 0)
            for n in range(rooms)
            for j in range(MEMBERS_PER_ROOM)
        ]
        k = KamailioImc(
            workdir / f"kamailio-{rooms}",
            "engine",
            room_rows,
            member_rows,
            children=2,
            shm_mb=1024,
            start_timeout=120,
        )
        if quiet:
            wait_until_quiet(limit=30)
        k.start()
        try:
            pids = descendants(k.groups()["kamailio"][0])
            point = KamailioPoint(
                rooms=rooms,
                members=rooms * MEMBERS_PER_ROOM,
                startup_s=round(k.started_in, 3),
                pss_mib=round(sum(pss_kib(p) for p in pids) / 1024, 1),
            )
        finally:
            k.stop(timeout=0.5)  # not waiting for imc to write every room back to db_text
        points.append(point)
        log(
            f"    Kamailio imc, {rooms:>5} rooms x {MEMBERS_PER_ROOM}: start-up "
            f"{point.startup_s} s, PSS {point.pss_mib} MiB"
        )
    return points


def run_scale(
    workdir: Path,
    sizes: list[int],
    repeats: int = 5,
    log: Any = print,
    kamailio_sizes: tuple[int, ...] = (),
    quiet: bool = True,
) -> ScaleResult:
    """Start the sidecar cold on each size; ``quiet``: first wait for an idle machine."""
    result = ScaleResult()
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        for rooms in sizes:
            db = workdir / f"scale-{rooms}.sqlite"
            built = build_db(db, rooms)
            largest = rooms == max(sizes)
            port = free_port() if largest else None
            sidecar = Sidecar(workdir / f"run-{rooms}", None, None, rpc_http_port=port, db_path=db)
            sidecar.workdir.mkdir(parents=True, exist_ok=True)
            if quiet:
                wait_until_quiet(limit=30)
            sidecar.start()
            try:
                assert sidecar.proc is not None
                pid = sidecar.proc.pid
                point = ScalePoint(
                    rooms=rooms,
                    members=rooms * MEMBERS_PER_ROOM,
                    db_build_s=round(built, 2),
                    startup_s=round(sidecar.started_in, 3),
                    rss_mib=round(status_kib(pid, "VmRSS") / 1024, 1),
                    peak_rss_mib=round(status_kib(pid, "VmHWM") / 1024, 1),
                )
                result.points.append(point)
                log(
                    f"    {rooms:>7} rooms x {MEMBERS_PER_ROOM}: start-up {point.startup_s} s, "
                    f"RSS {point.rss_mib} MiB (peak {point.peak_rss_mib} MiB)"
                )
                if largest and port is not None:
                    result.commands = sidecar.commands()
                    times = []
                    for _ in range(repeats):
                        took, size, count = list_rooms(port)
                        times.append(round(took, 4))
                        result.list_rooms_bytes, result.list_rooms_count = size, count
                    result.list_rooms_rooms = rooms
                    result.list_rooms_s = times
                    log(f"    imc.list_rooms over {rooms} rooms: {times} s, {size} bytes")
            finally:
                sidecar.stop()
            db.unlink(missing_ok=True)
        result.kamailio = kamailio_points(workdir, list(kamailio_sizes), log, quiet)
        xs = [float(p.members) for p in result.points]
        ys = [p.rss_mib for p in result.points]
        if len(xs) >= 2:
            a, b = fit(xs, ys)
            result.intercept_mib = round(a, 1)
            result.slope_mib_per_million = round(b * 1e6, 1)
    except Exception as exc:  # reported in the results
        result.error = f"{type(exc).__name__}: {exc}"
        log(f"    ERROR in scale: {result.error}")
    return result
