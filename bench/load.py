"""The senders: one sipp UAC per run, posting room MESSAGEs from an injection file.

Every MESSAGE body carries its sipp call number and sipp's send time
(``bench n<seq> r<row> t<date>\\t<time>\\t<epoch.usec>``), so a delivery can be matched to
its send whatever Call-ID the engine gives it.  Like a phone over UDP, sipp retransmits a
MESSAGE that is not answered (``retrans="500"``: Timer E from T1 = 500 ms; without the
attribute sipp 3.6 sends once).  A MESSAGE not answered 200 within 3 s is
a failed call; any other final reply is a failed call too, except 503 and 500, which the
scenario accepts and sipp counts (``-trace_counts``): refusals the benchmark reports as
such (still failures of the step).  500 is how a refusal arrives through a proxy: tm
turns a downstream 503 into 500 (RFC 3261 §16.7); the sidecar's other 500s (command
errors) cannot happen to the benchmark's chat texts.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .layout import DOMAIN, Plan

SIPP = os.environ.get("BENCH_SIPP", "/usr/bin/sipp")

_ROOM_SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="imc bench: room MESSAGE">
  <send retrans="500">
    <![CDATA[

      MESSAGE sip:[field0]@{domain} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[field1]@[field2]>;tag=[pid]b[call_number]
      To: <sip:[field0]@{domain}>
      Call-ID: [call_id]
      CSeq: 1 MESSAGE
      Max-Forwards: 70
      Content-Type: text/plain
      Content-Length: [len]

      bench n[call_number] r[field3] t[timestamp]

    ]]>
  </send>
  <recv response="503" optional="true" timeout="3000" next="refused"/>
  <recv response="500" optional="true" timeout="3000" next="refused"/>
  <recv response="200" timeout="3000"/>
  <label id="refused"/>
</scenario>
"""

# The generator alone: each call goes straight to one member's socket.
_DIRECT_SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="imc bench: direct MESSAGE">
  <nop>
    <action>
      <assignstr assign_to="h" value="[field1]" />
      <setdest host="[$h]" port="5060" protocol="udp" />
    </action>
  </nop>
  <send retrans="500">
    <![CDATA[

      MESSAGE sip:[field0]@[field1] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:sender@{domain}>;tag=[pid]b[call_number]
      To: <sip:[field0]@[field1]>
      Call-ID: [call_id]
      CSeq: 1 MESSAGE
      Max-Forwards: 70
      Content-Type: text/plain
      Content-Length: [len]

      bench n[call_number] r[field2] t[timestamp]

    ]]>
  </send>
  <recv response="503" optional="true" timeout="3000" next="refused"/>
  <recv response="500" optional="true" timeout="3000" next="refused"/>
  <recv response="200" timeout="3000"/>
  <label id="refused"/>
</scenario>
"""


@dataclass
class SippResult:
    command: list[str]
    returncode: int
    created: int
    successful: int
    failed: int
    retransmissions: int
    unexpected: int
    timeouts: int
    refused: int  # answered 503
    refused_500: int  # answered 500 (a 503 from behind a proxy)
    elapsed: float
    cpu_s: float
    max_rss_kib: int
    stats: dict[str, str] = field(default_factory=dict)
    stderr: str = ""
    hung: bool = False

    @property
    def failures(self) -> dict[str, int]:
        """sipp's non-zero failure counters, e.g. {"TimeoutOnRecv": 12}."""
        out = {}
        for key in self.stats:
            if key.startswith("Failed") and key.endswith("(C)") and key != "FailedCall(C)":
                n = _int(self.stats, key)
                if n:
                    out[key[len("Failed") : -len("(C)")]] = n
        return out


def _stat_row(path: Path) -> dict[str, str]:
    """The last row of sipp's -trace_stat file (written at exit)."""
    if not path.exists():
        return {}
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh, delimiter=";"))
    if len(rows) < 2:
        return {}
    header, last = rows[0], rows[-1]
    return dict(zip(header, last, strict=False))


def _int(stats: dict[str, str], key: str) -> int:
    try:
        return int(stats.get(key, "0") or 0)
    except ValueError:
        return 0


def run_sipp(
    workdir: Path,
    plan: Plan,
    target: tuple[str, int],
    *,
    rate: float | None,
    calls: int | None,
    window: int | None = None,
    duration: float | None = None,
    direct: bool = False,
    local_port: int,
    control_port: int,
    scenario_text: str | None = None,
) -> SippResult:
    """One sipp run: ``rate`` calls/s (open loop) or ``window`` outstanding (closed loop).

    Open loop sends ``calls`` messages at ``rate``; closed loop keeps ``window`` messages
    outstanding and stops after ``duration`` seconds.  ``scenario_text`` replaces the
    room scenario (``{domain}`` is filled in), e.g. bench/dispatch.py's commands.
    """
    if shutil.which(SIPP) is None and not Path(SIPP).exists():
        raise RuntimeError(f"sipp not found: {SIPP}")
    workdir.mkdir(parents=True, exist_ok=True)
    if scenario_text is not None:
        scenario, text = workdir / "custom.xml", scenario_text
    else:
        scenario = workdir / ("direct.xml" if direct else "room.xml")
        text = _DIRECT_SCENARIO if direct else _ROOM_SCENARIO
    scenario.write_text(text.format(domain=DOMAIN))
    inf = workdir / "senders.csv"
    inf.write_text("SEQUENTIAL\n" + "\n".join(plan.csv_lines) + "\n")
    stat = workdir / "sipp-stat.csv"
    stat.unlink(missing_ok=True)
    for old in workdir.glob("*_counts.csv"):
        old.unlink()
    cmd = [
        SIPP,
        "-sf", str(scenario),
        "-inf", str(inf),
        "-t", "u1",
        "-i", "127.0.0.1",
        "-p", str(local_port),
        "-cp", str(control_port),
        "-nostdin",
        "-trace_stat", "-stf", str(stat), "-fd", "3600", "-trace_counts",
        "-recv_timeout", "3000",
        "-buff_size", str(4 * 1024 * 1024),
        "-max_socket", "1024",
    ]  # fmt: skip
    if window is not None:
        assert duration is not None
        cmd += ["-l", str(window), "-r", "100000", "-rp", "1000"]
        cmd += ["-m", str(10_000_000), "-timeout", f"{max(1, round(duration))}s"]
    else:
        assert rate is not None and calls is not None
        cmd += ["-r", f"{rate:.0f}", "-rp", "1000", "-m", str(calls), "-l", "15000"]
        cmd += ["-timeout", f"{int(calls / rate) + 30}s"]
    cmd.append(f"{target[0]}:{target[1]}")
    began = time.monotonic()
    err_path = workdir / "sipp.err"
    with open(workdir / "sipp.out", "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=workdir)
        # sipp's own -timeout has been seen not to fire (a run that stopped creating
        # calls short of -m kept waiting): a wall-clock limit of our own
        limit = began + (duration or 0) + (calls / rate if calls and rate else 0) + 45
        hung = False
        try:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() > limit:
                    if hung:
                        proc.send_signal(signal.SIGKILL)
                    else:
                        hung = True
                        proc.send_signal(signal.SIGTERM)
                        limit += 5
                time.sleep(0.02)
        except BaseException:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            raise
    elapsed = time.monotonic() - began
    proc.returncode = os.waitstatus_to_exitcode(status)
    stats = _stat_row(stat)
    refused = refused_500 = 0
    for counts in workdir.glob("*_counts.csv"):
        row = _stat_row(counts)
        refused += sum(_int(row, k) for k in row if k.endswith("_503_Recv"))
        refused_500 += sum(_int(row, k) for k in row if k.endswith("_500_Recv"))
        counts.unlink()
    return SippResult(
        command=cmd,
        returncode=proc.returncode,
        created=_int(stats, "TotalCallCreated"),
        successful=_int(stats, "SuccessfulCall(C)"),
        failed=_int(stats, "FailedCall(C)"),
        retransmissions=_int(stats, "Retransmissions(C)"),
        unexpected=_int(stats, "FailedUnexpectedMessage(C)"),
        timeouts=_int(stats, "FailedCmdNotSent(C)")
        + _int(stats, "FailedMaxUDPRetrans(C)")
        + _int(stats, "FailedOutboundCongestion(C)")
        + _int(stats, "FailedTimeoutOnRecv(C)"),
        refused=refused,
        refused_500=refused_500,
        elapsed=elapsed,
        cpu_s=usage.ru_utime + usage.ru_stime,
        max_rss_kib=usage.ru_maxrss,
        stats=stats,
        stderr=("sipp did not finish in time and was stopped; " if hung else "")
        + err_path.read_text(errors="replace")[-2000:],
        hung=hung,
    )
