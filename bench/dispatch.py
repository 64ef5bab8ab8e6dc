"""``bench/run --comparisons dispatcher``: one sidecar against two behind
``kamailio-snippets/dispatcher.cfg``, both on one PostgreSQL database.

* Arm A: the operators' dispatcher.cfg with one entry in ``dispatcher.list``, one sidecar.
* Arm B: the same cfg with two entries, two sidecars on the same database.

Members REGISTER with that Kamailio, as in the deployment comparison; rooms are hashed
over the sidecars by their name (algorithm 7), so every shape has enough rooms to land
on both.  Kamailio relays the chat requests statefully (``t_relay()``, which failover
needs) and the copies statelessly; probes, timeouts and everything else are the
snippet's defaults, only the addresses and ``maxbuffer`` differ.  Each arm gets a new
scratch database on the machine's PostgreSQL (127.0.0.1, user postgres), made with
``imc_sidecar db create`` and dropped after the arm.

CPU is measured per group of processes: ``front`` (Kamailio), ``sidecar`` and
``sidecar-2`` (each main process with its delivery worker) and ``database`` (the whole
PostgreSQL server: its backends, WAL writer, checkpointer and the rest).  Each sidecar's
statistics are read over its HTTP RPC before every stop: how many texts each one served.

The same systems then measure commands (:func:`run_command_arm`): ``#join`` and
``#leave`` pairs from one user per room, each a committed write with its notices to the
room (the owner and the user), at a few fixed rates; CPU per command per group.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e.harness.kamailio import substdefs
from tests.e2e.harness.sipua import free_port, free_udp_run
from tests.e2e.harness.snippets import DISPATCHER_CFG, Front, SidecarAt, dispatcher
from tests.e2e.sidecar_process import rpc_result

from .layout import DOMAIN, OWNER, Plan, Pool, Shape, room_name
from .load import run_sipp
from .procs import Meter
from .runner import ArmResult, Runner, Step
from .systems import SOCKET_BUFFER, Sidecar, SystemError_, _kamailio_command, _kamailio_pid

LOOPBACK = "127.0.0.1"
PG_HOST = "127.0.0.1"
SHAPES = (Shape(100, 5), Shape(10, 10))
# Commands per second offered (as #join/#leave pairs at half that rate), lowest first;
# the steps stop at the first one that is not clean.
COMMAND_RATES = (100.0, 400.0, 800.0)
QUICK_COMMAND_RATE = 20.0
# The statistics kept per sidecar (stats.fetchn imc:), summed over its restarts.
STATS = (
    "imc.received_messages", "imc.chat_messages", "imc.sent_messages",
    "imc.failed_deliveries", "imc.refused_messages", "imc.cmd_join", "imc.cmd_leave",
    "imc.version_conflicts", "imc.feed_refreshed_rooms",
)  # fmt: skip

# One user's #join then #leave of one room: the same MESSAGE twice but for CSeq and body.
_COMMAND_SEND = """  <send retrans="500">
    <![CDATA[

      MESSAGE sip:[field0]@{{domain}} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[field1]@{{domain}}>;tag=[pid]c[call_number]
      To: <sip:[field0]@{{domain}}>
      Call-ID: [call_id]
      CSeq: {cseq} MESSAGE
      Max-Forwards: 70
      Content-Type: text/plain
      Content-Length: [len]

      {body}

    ]]>
  </send>
  <recv response="200" timeout="3000"/>
"""
COMMAND_SCENARIO = (
    '<?xml version="1.0" encoding="ISO-8859-1" ?>\n'
    '<scenario name="imc bench: #join and #leave">\n'
    + _COMMAND_SEND.format(cseq=1, body="#join")
    + _COMMAND_SEND.format(cseq=2, body="#leave")
    + "</scenario>\n"
)


# --------------------------------------------------------------------------- the database


def psql(sql: str, database: str = "postgres") -> str:
    cmd = ["psql", "-h", PG_HOST, "-U", "postgres", "-d", database, "-At",
           "-v", "ON_ERROR_STOP=1", "-f", "-"]  # fmt: skip
    done = subprocess.run(cmd, input=sql, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemError_(f"psql failed: {done.stderr.strip()}")
    return done.stdout


def _quote(value: object) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


class ScratchPostgres:
    """A new database on the machine's PostgreSQL, with Kamailio's imc tables."""

    def __init__(self) -> None:
        self.name = "imc_bench_" + uuid.uuid4().hex[:10]
        self.url = f"postgres://postgres@{PG_HOST}/{self.name}"
        self.created = False

    def create(
        self, rooms: list[tuple[str, str, int]], members: list[tuple[str, str, str, int]]
    ) -> None:
        psql(f"CREATE DATABASE {self.name}")
        self.created = True
        done = subprocess.run(
            [sys.executable, "-m", "imc_sidecar", "db", "create", "--db-url", self.url],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise SystemError_(f"imc_sidecar db create failed: {done.stderr}")
        sql = []
        if rooms:
            values = ",".join("(" + ",".join(map(_quote, row)) + ")" for row in rooms)
            sql.append(f"INSERT INTO imc_rooms (name, domain, flag) VALUES {values};")
        if members:
            values = ",".join("(" + ",".join(map(_quote, row)) + ")" for row in members)
            sql.append(f"INSERT INTO imc_members (username, domain, room, flag) VALUES {values};")
        if sql:
            psql("\n".join(sql), self.name)

    def backends(self) -> list[int]:
        """The server processes of the connections to this database."""
        out = psql(f"SELECT pid FROM pg_stat_activity WHERE datname = '{self.name}'")
        return [int(line) for line in out.split()]

    def server(self) -> list[int]:
        """The postmaster (so the meter takes every server process: backends, WAL writer,
        checkpointer); this database's backends when its pid file cannot be read."""
        try:
            data = psql("SHOW data_directory").strip()
            return [int(Path(data, "postmaster.pid").read_text().split()[0])]
        except (OSError, ValueError, IndexError):
            return self.backends()

    def count(self, table: str) -> int:
        return int(psql(f"SELECT count(*) FROM {table}", self.name).strip())

    def drop(self) -> None:
        if self.created:
            psql(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
            self.created = False


# --------------------------------------------------------------------------- the system


def _fresh(taken: set[int], count: int = 1) -> int:
    """The first of ``count`` consecutive free UDP ports, none of them in ``taken``."""
    while True:
        first = free_udp_run(LOOPBACK, count) if count > 1 else free_port(LOOPBACK)
        run = set(range(first, first + count))
        if not run & taken:
            taken.update(run)
            return first


def _tune(text: str) -> str:
    """The benchmark's UDP receive buffers, added to the operators' cfg."""
    marker = "auto_aliases=no\n"
    if marker not in text:
        raise SystemError_("dispatcher.cfg: no 'auto_aliases=no' line to add tuning after")
    return text.replace(marker, marker + f"maxbuffer={SOCKET_BUFFER}\n", 1)


class DispatcherSidecars:
    """kamailio-snippets/dispatcher.cfg (registrar, front, dispatcher) in front of
    ``count`` sidecars on one scratch PostgreSQL database."""

    def __init__(
        self,
        workdir: Path,
        rooms: list[tuple[str, str, int]],
        members: list[tuple[str, str, str, int]],
        *,
        count: int,
        children: int,
        shm_mb: int,
        delivery_workers: int,
        history: bool = True,
    ) -> None:
        self.workdir = workdir
        self.rooms = rooms
        self.members = members
        self.children = children
        self.shm_mb = shm_mb
        self.db = ScratchPostgres()
        taken: set[int] = set()
        self.port = _fresh(taken)
        self.target = (LOOPBACK, self.port)
        self.registrar: tuple[str, int] | None = self.target
        self.sidecars = [
            Sidecar(
                workdir / f"sidecar-{i + 1}", None, None,
                outbound_proxy=f"sip:{LOOPBACK}:{self.port}",
                rpc_http_port=_fresh(taken), port=_fresh(taken),
                delivery_workers=delivery_workers,
                delivery_port=_fresh(taken, delivery_workers) if delivery_workers else 0,
                history=history, db_url=self.db.url,
            )
            for i in range(count)
        ]
        self.front: Front | None = None
        self.started_in = 0.0
        # each sidecar's statistics (STATS), summed over every run of it
        self.served: list[dict[str, int]] = [dict.fromkeys(STATS, 0) for _ in self.sidecars]

    @property
    def label(self) -> str:
        return f"dispatcher + {len(self.sidecars)} sidecars"

    def _render(self) -> Front:
        defaults = substdefs(DISPATCHER_CFG.read_text())
        front = dispatcher(
            self.workdir / "front", self.target, domain=DOMAIN,
            sidecars=[
                SidecarAt(LOOPBACK, s.port,
                          tuple(range(s.delivery_port, s.delivery_port + s.delivery_workers)))
                for s in self.sidecars
            ],
            probe_interval=int(defaults["PROBE_INTERVAL"]),
            probe_timeout_ms=int(defaults["PROBE_TIMEOUT"]),
            chat_timeout_ms=int(defaults["CHAT_TIMEOUT"]),
            workers=self.children, debug=1,
        )  # fmt: skip
        front.kamailio.cfg_text = _tune(front.kamailio.cfg_text)
        front.kamailio.shm_mb = self.shm_mb
        return front

    def start(self) -> None:
        began = time.monotonic()
        try:
            if not self.db.created:
                self.db.create(self.rooms, self.members)
            for sidecar in self.sidecars:  # one after the other
                sidecar.start()
            if self.front is None:
                self.front = self._render()
            self.front.kamailio.start(timeout=30)
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - began

    def stop(self) -> None:
        for sidecar, served in zip(self.sidecars, self.served, strict=True):
            if sidecar.proc is not None and sidecar.proc.poll() is None:
                assert sidecar.rpc_http_port is not None
                with contextlib.suppress(Exception):  # a figure, never a reason to fail
                    stats = rpc_result(sidecar.rpc_http_port, "stats.fetchn", ["imc:"])
                    for key in STATS:
                        served[key] += int(stats.get(key, 0))
            sidecar.stop()
        if self.front is not None:
            self.front.kamailio.stop()

    def close(self) -> None:
        """Drop the scratch database (after the arm)."""
        self.db.drop()

    def groups(self) -> dict[str, list[int]]:
        assert self.front is not None
        groups = {"front": [_kamailio_pid(self.front.kamailio)]}
        for i, sidecar in enumerate(self.sidecars):
            assert sidecar.proc is not None
            groups["sidecar" if i == 0 else f"sidecar-{i + 1}"] = [sidecar.proc.pid]
        groups["database"] = self.db.server()
        return groups

    def commands(self) -> list[str]:
        assert self.front is not None
        entries = len(self.sidecars)
        return [
            _kamailio_command(self.front.kamailio)
            + f"   # kamailio-snippets/dispatcher.cfg, {entries} in dispatcher.list",
            *(c for s in self.sidecars for c in s.commands()),
        ]

    def problems(self) -> list[str]:
        front = self.front.kamailio.problems() if self.front is not None else []
        return front + [p for s in self.sidecars for p in s.problems()]

    def history_rows(self) -> dict[str, int]:
        return {t: self.db.count(t) for t in ("imc_sidecar_events", "imc_sidecar_messages")}


def systems(
    base: Path,
    rooms: list[tuple[str, str, int]],
    members: list[tuple[str, str, str, int]],
    *,
    children: int,
    shm_mb: int,
    delivery_workers: int,
) -> tuple[DispatcherSidecars, DispatcherSidecars]:
    """Arm A (one sidecar) and arm B (two)."""
    a, b = (
        DispatcherSidecars(
            base / arm, rooms, members, count=count, children=children, shm_mb=shm_mb,
            delivery_workers=delivery_workers,
        )
        for arm, count in (("A", 1), ("B", 2))
    )
    return a, b


# --------------------------------------------------------------------------- figures


def sidecar_groups(cpu: dict[str, float]) -> list[str]:
    return sorted(g for g in cpu if g == "sidecar" or g.startswith("sidecar-"))


def system_cpu(cpu: dict[str, float]) -> float | None:
    """Front + every sidecar + database: CPU per delivery (or command) of the system."""
    groups = ["front", *sidecar_groups(cpu), "database"]
    present = [cpu[g] for g in groups if g in cpu]
    return round(sum(present), 1) if present else None


def ratios(a: ArmResult, b: ArmResult) -> dict[str, float | None]:
    def ratio(x: float | None, y: float | None) -> float | None:
        return round(x / y, 2) if x is not None and y else None

    def cpu(step: Step | None) -> float | None:
        return system_cpu(step.cpu_us_per_delivery) if step else None

    return {
        "edge_deliveries_per_s": ratio(b.edge_deliveries_per_s, a.edge_deliveries_per_s),
        "closed_loop_deliveries_per_s": ratio(
            b.closed.deliveries_per_s if b.closed else None,
            a.closed.deliveries_per_s if a.closed else None,
        ),
        "cpu_us_per_delivery_at_edge": ratio(cpu(b.edge_step), cpu(a.edge_step)),
        "p99_at_a_edge": ratio(
            b.first_step.p99_ms if b.first_step else None,
            a.edge_step.p99_ms if a.edge_step else None,
        ),
    }


def served(system: DispatcherSidecars) -> list[dict[str, int]]:
    return [dict(s) for s in system.served]


# --------------------------------------------------------------------------- commands


@dataclass
class CommandStep:
    sidecars: int
    rate: float  # commands/s offered (#join/#leave pairs at half of it)
    duration_s: float
    pairs: int  # sipp calls created
    commands: int  # answered 200
    failed_calls: int
    retransmissions: int
    notices: int  # room notices the members received
    expected_notices: int  # 2 per command: the owner and the user
    clean: bool
    reasons: list[str]
    cpu_us_per_command: dict[str, float] = field(default_factory=dict)
    # the same, less what each group spends idle over as long (CommandArm.idle_cores)
    net_cpu_us_per_command: dict[str, float] = field(default_factory=dict)
    cpu_utilisation: dict[str, float] = field(default_factory=dict)
    other_processes_cores: float = 0.0
    sipp_command: list[str] = field(default_factory=list)


@dataclass
class CommandArm:
    sidecars: int
    rooms: int
    # cores each group uses with no traffic (probes, change feed, history timer)
    idle_cores: dict[str, float] = field(default_factory=dict)
    steps: list[CommandStep] = field(default_factory=list)
    stats: list[dict[str, int]] = field(default_factory=list)  # per sidecar, whole run
    commands: list[str] = field(default_factory=list)
    log_problems: list[str] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def command_rows(
    pool: Pool,
) -> tuple[list[tuple[str, str, int]], list[tuple[str, str, str, int]], Plan]:
    """One public room per pool room, with its member 0 as owner; member 1 joins and
    leaves it."""
    numbers = sorted({m.room for m in pool.members if m.index == 1})
    rooms = [(room_name(r), DOMAIN, 0) for r in numbers]
    owners = [
        (pool.member(r, 0).user, DOMAIN, f"sip:{room_name(r)}@{DOMAIN}", OWNER) for r in numbers
    ]
    lines = [f"{room_name(r)};{pool.member(r, 1).user};" for r in numbers]
    return rooms, owners, Plan(lines, [() for _ in lines])


def _idle(system: DispatcherSidecars, duration: float) -> dict[str, float]:
    """Cores each group of the system uses over ``duration`` s with no traffic."""
    meter = Meter(system.groups())
    meter.start()
    began = time.monotonic()
    time.sleep(duration)
    usage = meter.stop()
    interval = time.monotonic() - began
    return {name: round(float(u["cpu_s"]) / interval, 4) for name, u in usage.items()}


def _command_step(
    runner: Runner,
    system: DispatcherSidecars,
    plan: Plan,
    rate: float,
    duration: float,
    idle: dict[str, float],
) -> CommandStep:
    receivers = runner.receivers
    receivers.reset()
    groups = dict(system.groups())
    groups["receivers"] = receivers.pids
    meter = Meter(groups)
    meter.start()
    began = time.monotonic()
    pairs = max(1, round(rate / 2 * duration))
    sipp = run_sipp(
        runner.workdir / "sipp-commands", plan, system.target, rate=rate / 2, calls=pairs,
        local_port=runner.sipp_port, control_port=runner.sipp_control,
        scenario_text=COMMAND_SCENARIO,
    )  # fmt: skip
    receivers.wait_quiet()
    usage = meter.stop()
    interval = time.monotonic() - began
    notices, _ = receivers.received()
    commands = 2 * sipp.successful
    reasons = []
    if sipp.returncode not in (0, 1):
        reasons.append(f"sipp exited {sipp.returncode}: {sipp.stderr[-300:]!r}")
    if sipp.created != pairs:
        reasons.append(f"sipp created {sipp.created} of {pairs} pairs")
    if sipp.failed:
        reasons.append(f"{sipp.failed} pairs failed at the sender")
    if sipp.retransmissions:
        reasons.append(f"{sipp.retransmissions} sender retransmissions")
    if notices != 2 * commands:
        reasons.append(f"{notices} notices received of {2 * commands}")
    cpu = {
        name: round(float(u["cpu_s"]) / commands * 1e6, 1) if commands else 0.0
        for name, u in usage.items()
    }
    cpu["sipp"] = round(sipp.cpu_s / commands * 1e6, 1) if commands else 0.0
    net = {
        name: round(max(0.0, float(u["cpu_s"]) - idle[name] * interval) / commands * 1e6, 1)
        for name, u in usage.items()
        if name in idle and commands
    }
    util = {name: round(float(u["busiest_process_cpu_s"]) / interval, 2)
            for name, u in usage.items()}  # fmt: skip
    ours = sum(float(u["cpu_s"]) for u in usage.values()) + sipp.cpu_s
    return CommandStep(
        sidecars=len(system.sidecars), rate=rate, duration_s=duration, pairs=sipp.created,
        commands=commands, failed_calls=sipp.failed, retransmissions=sipp.retransmissions,
        notices=notices, expected_notices=2 * commands, clean=not reasons, reasons=reasons,
        cpu_us_per_command=cpu, net_cpu_us_per_command=net, cpu_utilisation=util,
        other_processes_cores=round(max(0.0, meter.process_s - ours) / interval, 2),
        sipp_command=sipp.command,
    )  # fmt: skip


def _show(step: CommandStep) -> str:
    cpu = " ".join(f"{k} {v}us" for k, v in step.cpu_us_per_command.items())
    verdict = "clean" if step.clean else "NOT clean: " + "; ".join(step.reasons)
    return (
        f"    {step.sidecars} sidecar(s) {step.rate:>6.0f} commands/s: {step.commands} "
        f"answered, {step.notices} notices, cpu/command {cpu} -- {verdict}"
    )


def run_command_arm(
    runner: Runner,
    workdir: Path,
    pool: Pool,
    *,
    count: int,
    rates: tuple[float, ...],
    duration: float,
    children: int,
    shm_mb: int,
    delivery_workers: int,
) -> CommandArm:
    """``count`` sidecars behind dispatcher.cfg: #join/#leave pairs at each rate."""
    rooms, owners, plan = command_rows(pool)
    arm = CommandArm(sidecars=count, rooms=len(rooms))
    system = DispatcherSidecars(
        workdir, rooms, owners, count=count, children=children, shm_mb=shm_mb,
        delivery_workers=delivery_workers,
    )  # fmt: skip
    try:
        system.start()
        assert system.registrar is not None
        runner.receivers.register(system.registrar, DOMAIN)
        arm.commands = system.commands()
        _command_step(runner, system, plan, rates[0], 1.0, {})  # warm-up, not kept
        arm.idle_cores = _idle(system, duration)
        runner.log(f"    {count} sidecar(s) idle: {arm.idle_cores} cores")
        for rate in rates:
            step = _command_step(runner, system, plan, rate, duration, arm.idle_cores)
            arm.steps.append(step)
            runner.log(_show(step))
            if not step.clean:
                break
    except Exception as exc:  # reported; the run goes on
        arm.error = f"{type(exc).__name__}: {exc}"
        runner.log(f"    ERROR in commands with {count} sidecar(s): {arm.error}")
    finally:
        arm.log_problems = system.problems()[:20]
        system.stop()
        arm.stats = served(system)
        system.close()
    return arm


# --------------------------------------------------------------------------- Markdown


def _f(value: Any, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def _cpu_cells(cpu: dict[str, float] | None) -> str:
    """front / sidecar(s) / database / all."""
    if not cpu:
        return "— / — / — / —"
    sidecars = " + ".join(_f(cpu[g], 1) for g in sidecar_groups(cpu)) or "—"
    return (
        f"{_f(cpu.get('front'), 1)} / {sidecars} / {_f(cpu.get('database'), 1)} "
        f"/ **{_f(system_cpu(cpu), 1)}**"
    )


def _busiest(step: dict[str, Any] | None) -> str:
    if not step:
        return "—"
    util = step["cpu_utilisation"]
    sidecars = " + ".join(_f(util[g], 2) for g in sidecar_groups(util))
    return f"{_f(util.get('front'), 2)} / {sidecars or '—'}"


def _shares(stats: list[dict[str, int]] | None) -> str:
    if not stats:
        return "—"
    texts = [s.get("imc.chat_messages", 0) for s in stats]
    total = sum(texts)
    if len(texts) == 1:
        return _f(total)
    return " / ".join(f"{_f(n)} ({n / total * 100:.0f} %)" if total else _f(n) for n in texts)


def dispatcher_table(report: dict[str, Any]) -> list[str]:
    """One sidecar (A) against two (B), per shape."""
    comp = report["comparisons"].get("dispatcher") or {}
    lines = [
        "| shape | sidecars | clean edge, msg/s | deliveries/s at edge | p50 / p99 ms at edge "
        "| p99 ms at A's edge | closed loop, deliveries/s "
        "| CPU µs per delivery at edge: front / sidecar(s) / database / **all** "
        "| busiest process, share of a core: front / sidecar(s) | texts served per sidecar "
        "| steps (restarts) |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for shape, pair in comp.items():
        for key, count in (("A", 1), ("B", 2)):
            arm = pair[key]
            edge = arm.get("edge_step")
            first = arm.get("first_step") if key == "B" else edge
            mark = "" if not first or first["clean"] else " ✗"
            closed = arm.get("closed")
            error = f" (error: {arm['error'][:80]})" if arm.get("error") else ""
            lines.append(
                f"| {shape} | {key}: {count}{error} | {_f(arm.get('edge_rate'))} "
                f"| {_f(arm.get('edge_deliveries_per_s'))} "
                f"| {_f(edge and edge['p50_ms'], 2)} / {_f(edge and edge['p99_ms'], 2)} "
                f"| {_f(first and first['p99_ms'], 2)}{mark} "
                f"| {_f(closed and closed['deliveries_per_s'])} "
                f"| {_cpu_cells(edge and edge['cpu_us_per_delivery'])} "
                f"| {_busiest(edge)} "
                f"| {_shares((pair.get('sidecar_stats') or {}).get(key))} "
                f"| {len(arm['steps'])} ({arm['restarts']}) |"
            )
        r = pair["ratios"]
        lines.append(
            f"| {shape} | **B / A** | | **{_f(r['edge_deliveries_per_s'], 2)}** | "
            f"| {_f(r['p99_at_a_edge'], 2)} | {_f(r['closed_loop_deliveries_per_s'], 2)} "
            f"| {_f(r['cpu_us_per_delivery_at_edge'], 2)} (all) | | | |"
        )
    return lines


def commands_table(report: dict[str, Any]) -> list[str]:
    arms = report.get("dispatcher_commands") or {}
    if not arms:
        return []
    lines = [
        "| sidecars | commands/s offered | answered 200 | notices received / expected "
        "| CPU µs per command: front / sidecar(s) / database / **all** "
        "| the same less idle | busiest process, share of a core: front / sidecar(s) "
        "| clean |",
        "|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for arm in arms.values():
        if arm.get("error"):
            lines.append(f"| {arm['sidecars']} | error: {arm['error'][:120]} | | | | | | |")
        for st in arm["steps"]:
            why = "yes" if st["clean"] else "no: " + "; ".join(st["reasons"])[:120]
            lines.append(
                f"| {st['sidecars']} | {_f(st['rate'])} | {_f(st['commands'])} "
                f"| {_f(st['notices'])} / {_f(st['expected_notices'])} "
                f"| {_cpu_cells(st['cpu_us_per_command'])} "
                f"| {_cpu_cells(st.get('net_cpu_us_per_command'))} | {_busiest(st)} | {why} |"
            )
    return lines


def dispatcher_markdown(report: dict[str, Any]) -> list[str]:
    out = [
        "## One sidecar against two behind kamailio-snippets/dispatcher.cfg (PostgreSQL)",
        "",
        *dispatcher_table(report),
        "",
        "Arm A: dispatcher.cfg with one entry in dispatcher.list and one sidecar; arm B: "
        "two entries, two sidecars on the same database (a scratch PostgreSQL database per "
        "arm), each with usage history on (the default). Members REGISTER with that "
        "Kamailio; it relays the chat requests statefully (`t_relay()`, as failover needs) "
        "and the copies statelessly. *CPU µs per "
        "delivery*: front Kamailio / each sidecar (main process and delivery worker) / the "
        "PostgreSQL server (every process of it) / all of them. *texts served per sidecar*: "
        "chat texts each sidecar accepted over the arm's whole run (its statistics), i.e. "
        "how the hash spread the rooms. B's first step runs at A's edge rate (✗: not clean "
        "there).",
        "",
    ]
    for shape, pair in (report["comparisons"].get("dispatcher") or {}).items():
        for key in ("A", "B"):
            out += [f"- dispatcher {shape} {key}: `{c}`" for c in pair[key].get("commands", [])]
    out.append("")
    commands = commands_table(report)
    if commands:
        out += [
            "### Commands: `#join` and `#leave`",
            "",
            *commands,
            "",
            "One user per room (of the owner and that user) sends `#join`, then `#leave` "
            "once the join is answered, round-robin over the rooms at the rate shown "
            "(commands/s; steps stop at the first one that is not clean). Each command is "
            "one committed write (the sidecar groups the writes queued at once into one "
            "transaction) and a notice to each of the room's two members. CPU per command "
            "answered 200, every process of each group included, as above; *less idle*: "
            "less what each group used over as long with no traffic (probes, the change "
            "feed's reads, timers), measured before the steps.",
            "",
        ]
        for arm in (report.get("dispatcher_commands") or {}).values():
            stats = arm.get("stats") or []
            refreshed = [s.get("imc.feed_refreshed_rooms", 0) for s in stats]
            conflicts = [s.get("imc.version_conflicts", 0) for s in stats]
            idle = ", ".join(f"{k} {v:.3f}" for k, v in (arm.get("idle_cores") or {}).items())
            out.append(
                f"- {arm['sidecars']} sidecar(s), {arm['rooms']} rooms: idle cores {idle}; rooms "
                f"re-read from the change feed per sidecar {refreshed}, version conflicts "
                f"{conflicts}"
            )
        out.append("")
    return out
