"""Private profiling load: sipp posts room MESSAGEs to one sidecar at a fixed rate.

Not the official benchmark (that is bench/'s runner); this exists to profile the
sidecar's fan-out path.  Members are 127.77.R.M:5060 UDP sockets answered 200 by one C
process (answer.c, built on first use).  Prints one JSON line per run: deliveries/s,
sidecar CPU µs per delivery, sipp failures, lost and retransmitted deliveries.

    .venv/bin/python bench/profile/load.py --rooms 10 --members 10 --rate 3000 --seconds 10
    ... --py-spy /tmp/prof.svg      # record a flame graph of the sidecar meanwhile
    ... --loop asyncio|uvloop       # IMC_EVENT_LOOP for the sidecar (when supported)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from imc_sidecar.demo.sidecar import free_port as demo_free_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
ANSWER = Path(tempfile.gettempdir()) / "imc-profile-answer"

SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="room message">
  <send retrans="500">
    <![CDATA[
MESSAGE sip:[field2]@chat.example SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:[field0]@[field1]>;tag=[call_number]
To: <sip:[field2]@chat.example>
Call-ID: [call_id]
CSeq: 1 MESSAGE
Max-Forwards: 70
Content-Type: text/plain
Content-Length: [len]

msg [call_number]
    ]]>
  </send>
  <recv response="200"/>
</scenario>
"""


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process and its children (delivery workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    user = system = 0
    for proc in [pid, *_children(pid)]:
        fields = Path(f"/proc/{proc}/stat").read_text().rsplit(")", 1)[1].split()
        user += int(fields[11])
        system += int(fields[12])
    return user / tick, system / tick


def _children(pid: int) -> list[int]:
    with contextlib.suppress(OSError):
        tasks = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return [int(child) for child in tasks]
    return []


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def free_port() -> int:
    return demo_free_port("127.0.0.1")  # the one rule of the demo and the tests


def rpc(port: int, method: str, *params: object) -> object:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    req = urllib.request.Request(f"http://127.0.0.1:{port}/RPC", body.encode())
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())["result"]


def stats(port: int) -> dict[str, int]:
    result = rpc(port, "stats.fetchn", "imc:")
    assert isinstance(result, dict)
    return {k.split(".", 1)[1]: int(v) for k, v in result.items()}


def answered(stats_file: Path) -> tuple[int, int]:
    try:
        got, retrans = stats_file.read_text().split()
    except (OSError, ValueError):
        return 0, 0
    return int(got), int(retrans)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rooms", type=int, default=10)
    ap.add_argument("--members", type=int, default=10)
    ap.add_argument("--rate", type=int, default=1000, help="room messages per second")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--loop", default=None, help="IMC_EVENT_LOOP for the sidecar")
    ap.add_argument("--py-spy", default=None, help="record a flame graph (svg) here")
    ap.add_argument("--py-spy-raw", default=None, help="record raw collapsed stacks here")
    ap.add_argument("--env", action="append", default=[], help="NAME=VALUE for the sidecar")
    args = ap.parse_args()

    if not ANSWER.exists() or ANSWER.stat().st_mtime < (HERE / "answer.c").stat().st_mtime:
        subprocess.run(["gcc", "-O2", "-o", str(ANSWER), str(HERE / "answer.c")], check=True)
    work = Path(tempfile.mkdtemp(prefix="imc-profile-"))
    members = [
        (f"u{m}", f"127.77.{r}.{m + 1}", f"room{r}")
        for r in range(args.rooms)
        for m in range(args.members)
    ]
    (work / "hosts").write_text("".join(f"{h}\n" for _, h, _ in members))
    answer_stats = work / "answer.stats"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        answerer = subprocess.Popen([str(ANSWER), str(work / "hosts"), "5060", str(answer_stats)])
        procs.append(answerer)
        sip_port, rpc_port = free_port(), free_port()
        env = {**os.environ, "IMC_DB_MODE": "0", "IMC_LOG_LEVEL": "warning"}
        if args.loop:
            env["IMC_EVENT_LOOP"] = args.loop
        for item in args.env:
            name, _, value = item.partition("=")
            env[name] = value
        sidecar = subprocess.Popen(
            [
                str(ROOT / ".venv/bin/python"), "-m", "imc_sidecar", "serve",
                "--sip-listen", f"udp:127.0.0.1:{sip_port}",
                "--rpc-http", f"127.0.0.1:{rpc_port}",
                "--rpc-dgram", "off", "--rpc-binrpc", "off",
            ],
            env=env,
            cwd=work,
        )
        procs.append(sidecar)
        for _ in range(100):
            try:
                rpc(rpc_port, "core.version")
                break
            except OSError:
                time.sleep(0.1)
        # Everyone joins (create_on_join makes the room); the answerer takes the notices.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            s.settimeout(5)
            for i, (user, host, room) in enumerate(members):
                req = (
                    f"MESSAGE sip:{room}@chat.example SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP 127.0.0.1:{s.getsockname()[1]};branch=z9hG4bKj{i}\r\n"
                    f"From: <sip:{user}@{host}>;tag=j{i}\r\nTo: <sip:{room}@chat.example>\r\n"
                    f"Call-ID: join-{i}\r\nCSeq: 1 MESSAGE\r\nContent-Length: 5\r\n\r\n#join"
                )
                s.sendto(req.encode(), ("127.0.0.1", sip_port))
                reply = s.recv(65535)
                assert reply.startswith(b"SIP/2.0 200"), reply[:80]
        time.sleep(1.0)  # join notices settle
        # Senders: member 0.. of each room in turn, rooms interleaved.
        order = [members[r * args.members + m] for m in range(args.members)
                 for r in range(args.rooms)]
        (work / "senders.csv").write_text(
            "SEQUENTIAL\n" + "".join(f"{u};{h};{room}\n" for u, h, room in order)
        )
        (work / "scenario.xml").write_text(SCENARIO)
        before_stats = stats(rpc_port)
        before_answered = answered(answer_stats)
        total = int(args.rate * args.seconds)
        spy = None
        if args.py_spy or args.py_spy_raw:
            out = args.py_spy or args.py_spy_raw
            fmt = ["--format", "raw"] if args.py_spy_raw else []
            spy = subprocess.Popen(
                [str(ROOT / ".venv/bin/py-spy"), "record", "-p", str(sidecar.pid), "-o", out,
                 "-r", "200", "--nonblocking", "--subprocesses", *fmt,
                 "-d", str(int(args.seconds) + 1)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        cpu0 = cpu_times(sidecar.pid)
        t0 = time.monotonic()
        peak = [0]
        stop_polling = threading.Event()

        def poll() -> None:  # the overload measure, twice a second
            while not stop_polling.wait(0.5):
                with contextlib.suppress(OSError, ValueError, KeyError):
                    peak[0] = max(peak[0], stats(rpc_port).get("pending_deliveries", 0))

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        sipp = subprocess.run(
            [
                shutil.which("sipp") or "sipp", f"127.0.0.1:{sip_port}",
                "-sf", str(work / "scenario.xml"), "-inf", str(work / "senders.csv"),
                "-r", str(args.rate), "-rp", "1000", "-m", str(total),
                "-i", "127.0.0.1", "-p", str(free_port()), "-t", "u1",
                "-l", "100000", "-nostdin", "-bg" if False else "-trace_stat",
                "-stf", str(work / "sipp.csv"), "-fd", "1",
                "-timeout", str(int(args.seconds * 3 + 30)), "-max_socket", "10",
            ],
            cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        elapsed = time.monotonic() - t0
        stop_polling.set()
        # Wait for the last deliveries (and any retransmission timers) to settle.
        expected = total * (args.members - 1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            got = answered(answer_stats)[0] - before_answered[0]
            if got >= expected:
                break
            time.sleep(0.2)
        user, system = (a - b for a, b in zip(cpu_times(sidecar.pid), cpu0, strict=True))
        cpu = user + system
        time.sleep(1.0)
        got, retrans = (a - b for a, b in zip(answered(answer_stats), before_answered, strict=True))
        after = stats(rpc_port)
        if spy is not None:
            spy.wait(timeout=60)
        sipp_rows = (work / "sipp.csv").read_text().splitlines()
        header = sipp_rows[0].split(";")
        last = dict(zip(header, sipp_rows[-1].split(";"), strict=False))
        ok_calls = int(last.get("SuccessfulCall(C)", 0))
        failed_calls = int(last.get("FailedCall(C)", 0))
        delta = {k: after[k] - before_stats.get(k, 0) for k in after}
        result = {
            "shape": f"{args.rooms}x{args.members}",
            "rate_msgs": args.rate,
            "offered_deliveries_per_s": args.rate * (args.members - 1),
            "seconds": round(elapsed, 2),
            "sipp_rc": sipp.returncode,
            "sipp_ok": ok_calls,
            "sipp_failed": failed_calls,
            "expected": expected,
            "delivered": got,
            "retransmitted": retrans,
            "failed_deliveries": delta.get("failed_deliveries"),
            "sent_messages": delta.get("sent_messages"),
            "achieved_deliveries_per_s": round(got / elapsed),
            "cpu_s": round(cpu, 2),
            "us_per_delivery": round(cpu * 1e6 / max(got, 1), 1),
            "user_us": round(user * 1e6 / max(got, 1), 1),
            "sys_us": round(system * 1e6 / max(got, 1), 1),
            "rss_kib": rss_kib(sidecar.pid),
            "peak_pending": peak[0],
            "refused": delta.get("refused_messages"),
            "clean": sipp.returncode == 0 and failed_calls == 0 and got == expected
            and retrans == 0 and delta.get("failed_deliveries") == 0,
        }
        print(json.dumps(result))
        return 0 if result["clean"] else 1
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
