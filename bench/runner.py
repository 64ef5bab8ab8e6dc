"""Drive the load at each arm: measured steps, the search for the clean edge, closed loop."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tests.e2e.harness.sipua import free_port

from .analysis import Deliveries, Record, analyse
from .layout import Plan, Pool, Shape
from .load import SippResult, run_sipp
from .procs import Meter, machine_seconds
from .receivers import RECORD

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


class System(Protocol):
    target: tuple[str, int]
    registrar: tuple[str, int] | None
    started_in: float

    @property
    def label(self) -> str: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def groups(self) -> dict[str, list[int]]: ...
    def commands(self) -> list[str]: ...
    def problems(self) -> list[str]: ...


# --------------------------------------------------------------------------- receivers


def build_receiver(workdir: Path) -> Path | None:
    """Compile bench/receiver.c; None when there is no C compiler (Python fallback)."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return None
    binary = workdir / "receiver"
    done = subprocess.run(
        [cc, "-O2", "-o", str(binary), str(HERE / "receiver.c")],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        print(f"bench: cc failed, using the Python receivers:\n{done.stderr}", flush=True)
        return None
    return binary


class ReceiverPool:
    """Receiver processes (bench/receiver.c, or ``python -m bench.receivers``), members
    split round-robin between them."""

    def __init__(self, workdir: Path, pool: Pool, processes: int, *, python: bool = False):
        self.workdir = workdir
        self.pool = pool
        self.count = max(1, processes)
        self.python = python
        self.kind = "python"
        self.procs: list[subprocess.Popen[str]] = []

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        binary = None if self.python else build_receiver(self.workdir)
        self.kind = "C (bench/receiver.c)" if binary else "Python (bench/receivers.py)"
        for k in range(self.count):
            members = self.pool.members[k :: self.count]
            spec = self.workdir / f"members-{k}.txt"
            spec.write_text("".join(f"{m.id} {m.ip} {m.user}\n" for m in members))
            cmd = [str(binary)] if binary else [sys.executable, "-m", "bench.receivers"]
            proc = subprocess.Popen(
                [*cmd, str(spec)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                cwd=REPO,
            )
            self.procs.append(proc)
        for proc in self.procs:
            line = self._read(proc)
            if not line.startswith("ready"):
                raise RuntimeError(f"receiver did not start: {line!r}")

    @staticmethod
    def _read(proc: subprocess.Popen[str]) -> str:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"receiver {proc.pid} died ({proc.poll()})")
        return line.strip()

    def command(self, line: str) -> list[str]:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(line + "\n")
            proc.stdin.flush()
        return [self._read(proc) for proc in self.procs]

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def reset(self) -> None:
        self.command("reset")

    def received(self) -> tuple[int, float]:
        total, last = 0, 0.0
        for reply in self.command("count"):
            _, n, t, _other = reply.split()
            total += int(n)
            last = max(last, float(t))
        return total, last

    def wait_quiet(self, idle: float = 0.5, limit: float = 8.0) -> None:
        """Until nothing arrived for ``idle`` seconds (at most ``limit``)."""
        deadline = time.monotonic() + limit
        seen = -1
        still_since = time.monotonic()
        while time.monotonic() < deadline:
            n, _ = self.received()
            if n != seen:
                seen = n
                still_since = time.monotonic()
            elif time.monotonic() - still_since >= idle:
                return
            time.sleep(0.1)

    def records(self) -> list[Record]:
        out: list[Record] = []
        for k, proc in enumerate(self.procs):
            path = self.workdir / f"records-{k}.bin"
            assert proc.stdin is not None
            proc.stdin.write(f"dump {path}\n")
            proc.stdin.flush()
            answer = self._read(proc)
            if not answer.startswith("ok"):
                raise RuntimeError(f"receiver dump failed: {answer}")
            out.extend(RECORD.iter_unpack(path.read_bytes()))
            path.unlink()
        return out

    def register(self, registrar: tuple[str, int], domain: str) -> int:
        replies = self.command(f"register {registrar[0]} {registrar[1]} {domain} 7200")
        done = sum(int(r.split()[1]) for r in replies)
        if done != len(self.pool.members):
            raise RuntimeError(f"only {done} of {len(self.pool.members)} members registered")
        return done

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    self.command_one(proc, "quit")
                    proc.wait(timeout=5)
                except (OSError, RuntimeError, subprocess.TimeoutExpired):
                    proc.kill()
                    proc.wait()
        self.procs = []

    def command_one(self, proc: subprocess.Popen[str], line: str) -> str:
        assert proc.stdin is not None
        proc.stdin.write(line + "\n")
        proc.stdin.flush()
        return self._read(proc)


# --------------------------------------------------------------------------- one step


def _acked_incomplete(d: Deliveries, sipp: SippResult) -> int:
    """Messages not delivered to every member beyond those not answered 200: a lower
    bound of the answered-200 messages with a copy missing."""
    return max(0, d.sent - d.complete - sipp.failed - sipp.refused - sipp.refused_500)


@dataclass
class Step:
    arm: str
    shape: str
    kind: str  # "open" (fixed rate) or "closed" (fixed window)
    rate: float | None  # messages/s offered (open loop)
    window: int | None  # messages outstanding (closed loop)
    duration_s: float
    clean: bool
    reasons: list[str]
    sent: int
    expected: int
    delivered: int
    lost: int
    duplicates: int
    engine_retransmissions: int
    unexpected: int
    sipp_failed: int
    sipp_retransmissions: int
    sipp_unexpected_replies: int
    refused_503: int
    refused_500: int
    acked_incomplete: int  # lower bound: answered 200, a copy never arrived
    sent_rate: float  # messages/s sipp actually sent
    offered_deliveries_per_s: float
    deliveries_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    cpu_us_per_delivery: dict[str, float] = field(default_factory=dict)
    cpu_utilisation: dict[str, float] = field(default_factory=dict)  # busiest process, 0-1
    peak_rss_mib: dict[str, float] = field(default_factory=dict)  # largest process's VmHWM
    pss_mib: dict[str, float] = field(default_factory=dict)  # all processes, at the end
    processes: dict[str, int] = field(default_factory=dict)
    # cores' worth of CPU over the step: other processes of the machine (interference),
    # and irq+softirq (loopback networking, charged to no process)
    other_processes_cores: float = 0.0
    softirq_cores: float = 0.0
    disturbed: bool = False  # still disturbed after the retries: ignored for the edge
    sipp_command: list[str] = field(default_factory=list)


def wait_until_quiet(limit: float = 90.0, threshold: float = 0.15) -> float:
    """Wait (at most ``limit`` s) until the machine's processes use < ``threshold`` cores
    over a second; returns the last such load."""
    deadline = time.monotonic() + limit
    load = 0.0
    while time.monotonic() < deadline:
        before = machine_seconds()[0]
        time.sleep(1.0)
        load = machine_seconds()[0] - before
        if load < threshold:
            break
    return load


@dataclass
class Settings:
    duration: float = 4.0
    closed_duration: float = 4.0
    window: int = 10
    growth: float = 1.5
    refinements: int = 2
    confirm: bool = True
    max_steps: int = 12
    max_deliveries_per_s: float = 80_000.0
    min_deliveries_per_s: float = 200.0
    # other processes busier than this (cores) during a step: the step is run again
    disturbed: float = 0.25
    retries: int = 4


class Runner:
    def __init__(self, workdir: Path, receivers: ReceiverPool, settings: Settings) -> None:
        self.workdir = workdir
        self.receivers = receivers
        self.settings = settings
        self.sipp_port = free_port("127.0.0.1")
        self.sipp_control = free_port("127.0.0.1")
        self.log: Callable[[str], None] = lambda text: print(text, flush=True)

    def measure(
        self,
        arm: str,
        system: System | None,
        plan: Plan,
        shape: Shape,
        *,
        rate: float | None = None,
        window: int | None = None,
        duration: float,
        direct: bool = False,
    ) -> Step:
        self.receivers.reset()
        groups = dict(system.groups()) if system is not None else {}
        groups["receivers"] = self.receivers.pids
        meter = Meter(groups)
        meter.start()
        began = time.monotonic()
        target = system.target if system is not None else ("127.0.0.1", 5060)
        calls = max(1, round(rate * duration)) if rate is not None else None
        sipp = run_sipp(
            self.workdir / "sipp",
            plan,
            target,
            rate=rate,
            calls=calls,
            window=window,
            duration=duration if window is not None else None,
            direct=direct,
            local_port=self.sipp_port,
            control_port=self.sipp_control,
        )
        self.receivers.wait_quiet()
        usage = meter.stop()
        interval = time.monotonic() - began
        ours = sum(float(u["cpu_s"]) for u in usage.values()) + sipp.cpu_s
        d = analyse(self.receivers.records(), plan, sipp.created)
        if window is None and _acked_incomplete(d, sipp) > 0:
            # copies of messages answered 200 are missing: they may still come, the
            # engine retransmitting them (every 4 s at most, for up to 32 s)
            self.receivers.wait_quiet(idle=4.5, limit=40.0)
            d = analyse(self.receivers.records(), plan, sipp.created)
        step = self._step(arm, shape, rate, window, duration, calls, sipp, d, usage)
        step.other_processes_cores = round(max(0.0, meter.process_s - ours) / interval, 2)
        step.softirq_cores = round(meter.interrupt_s / interval, 2)
        return step

    def _step(
        self,
        arm: str,
        shape: Shape,
        rate: float | None,
        window: int | None,
        duration: float,
        calls: int | None,
        sipp: SippResult,
        d: Deliveries,
        usage: dict[str, dict[str, float | int]],
    ) -> Step:
        fanout = d.expected / d.sent if d.sent else float(shape.fanout)
        span = d.last_send - d.first_send
        sent_rate = (d.sent - 1) / span if span > 0 and d.sent > 1 else 0.0
        reasons = []
        if sipp.returncode not in (0, 1) and not (window is not None and sipp.returncode == 97):
            reasons.append(f"sipp exited {sipp.returncode}: {sipp.stderr[-300:]!r}")
        if sipp.hung:
            reasons.append("sipp did not finish in time (stopped)")
        if calls is not None and sipp.created != calls:
            reasons.append(f"sipp created {sipp.created} of {calls} messages")
        if sipp.failed:
            why = ", ".join(f"{k} {v}" for k, v in sipp.failures.items()) or "?"
            reasons.append(f"{sipp.failed} messages failed at the sender ({why})")
        if sipp.refused:
            reasons.append(f"{sipp.refused} messages refused with 503")
        if sipp.refused_500:
            reasons.append(f"{sipp.refused_500} messages refused with 500 (503 via a proxy)")
        if sipp.retransmissions:
            reasons.append(f"{sipp.retransmissions} sender retransmissions")
        if d.lost:
            reasons.append(f"{d.lost} deliveries lost")
        if d.duplicates:
            reasons.append(f"{d.duplicates} duplicate deliveries (new Call-ID)")
        if d.retransmitted:
            reasons.append(f"{d.retransmitted} deliveries retransmitted by the engine")
        if d.unexpected:
            reasons.append(f"{d.unexpected} deliveries to the wrong member")
        if rate is not None and sent_rate and sent_rate < 0.93 * rate:
            reasons.append(f"the generator fell behind: {sent_rate:.0f} of {rate:.0f} msg/s")
        if window is not None:
            # closed loop: sipp is stopped with messages outstanding; those may be cut off
            reasons = [r for r in reasons if "lost" not in r and "created" not in r]
        deliveries = d.delivered
        elapsed = (d.last_arrival - d.first_send) if d.delivered else 0.0
        measured = {name: u for name, u in usage.items()}
        interval = max(sipp.elapsed, 1e-3)
        cpu_us = {
            name: round(float(u["cpu_s"]) / deliveries * 1e6, 1) if deliveries else 0.0
            for name, u in measured.items()
        }
        cpu_us["sipp"] = round(sipp.cpu_s / deliveries * 1e6, 1) if deliveries else 0.0
        util = {
            name: round(float(u["busiest_process_cpu_s"]) / interval, 2)
            for name, u in measured.items()
        }
        util["sipp"] = round(sipp.cpu_s / interval, 2)
        rss = {name: round(int(u["peak_rss_kib_max"]) / 1024, 1) for name, u in measured.items()}
        rss["sipp"] = round(sipp.max_rss_kib / 1024, 1)
        pss = {name: round(int(u["pss_kib"]) / 1024, 1) for name, u in measured.items()}
        p50, p99 = d.percentile(50), d.percentile(99)
        return Step(
            arm=arm,
            shape=shape.name,
            kind="closed" if window is not None else "open",
            rate=rate,
            window=window,
            duration_s=duration,
            clean=not reasons,
            reasons=reasons,
            sent=d.sent,
            expected=d.expected,
            delivered=d.delivered,
            lost=d.lost,
            duplicates=d.duplicates,
            engine_retransmissions=d.retransmitted,
            unexpected=d.unexpected,
            sipp_failed=sipp.failed,
            sipp_retransmissions=sipp.retransmissions,
            sipp_unexpected_replies=sipp.unexpected,
            refused_503=sipp.refused,
            refused_500=sipp.refused_500,
            acked_incomplete=_acked_incomplete(d, sipp),
            sent_rate=round(sent_rate, 1),
            offered_deliveries_per_s=round((rate or 0) * fanout, 1),
            deliveries_per_s=round(deliveries / elapsed, 1) if elapsed > 0 else 0.0,
            p50_ms=round(p50, 3) if p50 is not None else None,
            p99_ms=round(p99, 3) if p99 is not None else None,
            max_ms=round(max(d.latencies_ms), 3) if d.latencies_ms else None,
            cpu_us_per_delivery=cpu_us,
            cpu_utilisation=util,
            peak_rss_mib=rss,
            pss_mib=pss,
            processes={name: int(u["processes"]) for name, u in measured.items()},
            sipp_command=sipp.command,
        )


# --------------------------------------------------------------------------- an arm


@dataclass
class ArmResult:
    comparison: str
    arm: str  # "A" or "B"
    system: str
    shape: str
    fanout: int
    setting: str = ""  # how the system was run, where the arms differ in it ("history on")
    edge_rate: float | None = None  # messages/s: highest rate whose every run was clean
    edge_deliveries_per_s: float | None = None
    edge_step: Step | None = None
    first_step: Step | None = None  # the first rate tried (B starts at A's edge)
    closed: Step | None = None
    steps: list[Step] = field(default_factory=list)
    disturbed: list[Step] = field(default_factory=list)  # re-run: others used the CPU
    restarts: int = 0
    # texts the system answered 200 over its whole run (warm-ups, disturbed steps and
    # closed loop included), as sipp counted them: what its usage history should record
    accepted: int = 0
    started_in_s: float = 0.0
    commands: list[str] = field(default_factory=list)
    log_problems: list[str] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _accepted(step: Step) -> int:
    """Messages of a step answered 200: sent, less refused and failed at the sender."""
    refused = step.refused_503 + step.refused_500 + step.sipp_failed
    return max(0, step.sent - refused)


def _show(step: Step) -> str:
    what = f"{step.rate:.0f} msg/s" if step.rate is not None else f"window {step.window}"
    verdict = "clean" if step.clean else "NOT clean: " + "; ".join(step.reasons)
    p = f"p50 {step.p50_ms} ms p99 {step.p99_ms} ms" if step.p99_ms is not None else "no latency"
    cpu = " ".join(f"{k} {v}us" for k, v in step.cpu_us_per_delivery.items())
    other = f", others {step.other_processes_cores} cores" if step.other_processes_cores else ""
    return (
        f"    {step.arm:>4} {step.shape:>6} {what:>16}: {step.deliveries_per_s:>9.0f} del/s, "
        f"{p}, cpu/delivery {cpu}{other} -- {verdict}"
    )


def run_arm(
    runner: Runner,
    result: ArmResult,
    system: System | None,
    plan: Plan,
    shape: Shape,
    start_rate: float,
    *,
    domain: str,
    closed_loop: bool = True,
    direct: bool = False,
) -> ArmResult:
    """Start the system, search the clean edge from ``start_rate``, run closed loop, stop."""
    s = runner.settings
    fanout = max(1, shape.fanout if not direct else 1)
    max_rate = s.max_deliveries_per_s / fanout
    min_rate = s.min_deliveries_per_s / fanout
    outcomes: dict[float, list[bool]] = {}
    up = False

    def boot() -> None:
        nonlocal up
        if system is None:
            up = True
            return
        system.start()
        result.started_in_s = round(system.started_in, 3)
        if system.registrar is not None:
            runner.receivers.register(system.registrar, domain)
        # warm-up: a second at a low rate, not measured
        warm = runner.measure(
            result.arm, system, plan, shape, rate=max(min_rate, 50.0), duration=1.0
        )
        result.accepted += _accepted(warm)
        up = True

    def down() -> None:
        nonlocal up
        if system is not None:
            result.log_problems.extend(system.problems()[:20])
            system.stop()
        up = False

    def measured(**kwargs: Any) -> Step:
        """One step; again (after a pause) while other processes disturbed it."""
        for attempt in range(s.retries + 1):
            if not up:
                boot()
            st = runner.measure(result.arm, system, plan, shape, direct=direct, **kwargs)
            result.accepted += _accepted(st)
            if s.retries == 0 or st.other_processes_cores <= s.disturbed:
                return st  # (no retries: a smoke run does not judge disturbance)
            if attempt == s.retries:
                st.reasons.append(
                    f"disturbed: other processes used {st.other_processes_cores} cores "
                    "(not counted for the edge)"
                )
                st.clean = False
                st.disturbed = True
                return st
            result.disturbed.append(st)
            runner.log(
                f"    (disturbed: other processes used {st.other_processes_cores} cores; "
                "waiting for a quiet machine and repeating)"
            )
            if system is not None:
                down()
            wait_until_quiet(limit=240)
        raise AssertionError("unreachable")

    def step(rate: float) -> bool:
        st = measured(rate=rate, duration=s.duration)
        result.steps.append(st)
        if result.first_step is None:
            result.first_step = st
        if not st.disturbed:
            outcomes.setdefault(rate, []).append(st.clean)
        runner.log(_show(st))
        if not st.clean and system is not None:
            down()  # an overloaded system is restarted before the next step
            result.restarts += 1
        return st.clean

    def edge() -> float | None:
        good = [r for r, runs in outcomes.items() if all(runs)]
        return max(good) if good else None

    try:
        boot()
        if system is not None:
            result.commands = system.commands()
        rate = start_rate
        best: float | None = None
        worst: float | None = None
        # ramp up (or down when the first rate already fails)
        while len(result.steps) < s.max_steps:
            if step(rate):
                best = rate
                if worst is not None or rate * s.growth > max_rate:
                    break
                rate *= s.growth
            else:
                worst = rate
                if best is not None:
                    break
                rate /= s.growth
                if rate < min_rate:
                    break
        # narrow the gap between the highest clean and the lowest failing rate
        for _ in range(s.refinements):
            if best is None or worst is None or worst / best < 1.08:
                break
            if len(result.steps) >= s.max_steps:
                break
            mid = math.sqrt(best * worst)
            if step(mid):
                best = mid
            else:
                worst = mid
        # the edge is noisy: run the best rate once more
        if s.confirm and best is not None and len(result.steps) < s.max_steps + 1:
            step(best)
        # no rate clean in every run (the repeat failed where the search began): go down
        while s.confirm and edge() is None and len(result.steps) < s.max_steps + 3:
            if not outcomes:
                break
            rate = min(outcomes) / math.sqrt(s.growth)
            if rate < min_rate:
                break
            step(rate)
        top = edge()
        if top is not None:
            result.edge_rate = round(top, 1)
            result.edge_deliveries_per_s = round(top * fanout, 1)
            clean_at_top = [
                st
                for st in result.steps
                if st.rate is not None and abs(st.rate - top) < 1e-6 and st.clean
            ]
            result.edge_step = clean_at_top[-1]
        if closed_loop:
            st = measured(window=s.window, duration=s.closed_duration)
            result.closed = st
            runner.log(_show(st))
    except Exception as exc:  # reported in the results; the run goes on
        result.error = f"{type(exc).__name__}: {exc}"
        runner.log(f"    ERROR in {result.comparison}/{result.arm}/{shape.name}: {result.error}")
    finally:
        if up:
            down()
    return result
