"""`demo --start`: run a sidecar of our own on a scratch SQLite database.

It is `python -m imc_sidecar serve` in a session of its own (a Ctrl-C in the terminal
reaches the demo only, which decides whether to stop it), logging to a file beside the
database rather than to a pipe: a pipe nobody reads once the demo has exited would
block a sidecar left running.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SidecarStartError", "StartedSidecar", "free_port", "start_sidecar"]

_LISTENING = re.compile(r"listening on udp:(\S+):(\d+)")


class SidecarStartError(RuntimeError):
    """The sidecar did not come up; the message ends with its last log lines."""


@dataclass
class StartedSidecar:
    process: subprocess.Popen[bytes]
    db_url: str
    sip: tuple[str, int]
    rpc_url: str
    log: Path

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL if it lingers; its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


def free_port(host: str) -> int:
    """A port free for UDP and TCP on `host` right now (the sidecar binds it next)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, port))
                except OSError:
                    continue
            return port
    raise SidecarStartError(f"no free port on {host}")


def start_sidecar(
    db: Path | None,
    sip: tuple[str, int] | None,
    rpc: tuple[str, int] | None,
    timeout: float = 20.0,
) -> StartedSidecar:
    """Start `imc-sidecar serve`; return once its SIP socket is listening."""
    if db is None:
        db = Path(tempfile.mkdtemp(prefix="imc-demo-")) / "imc.sqlite"
    db = db.resolve()
    db.parent.mkdir(parents=True, exist_ok=True)
    db_url = f"sqlite:///{db}"  # an absolute path: sqlite:////tmp/...
    sip_host, sip_port = sip if sip is not None else ("127.0.0.1", 0)
    rpc_host, rpc_port = rpc if rpc is not None else ("127.0.0.1", 0)
    sip_port = sip_port or free_port(sip_host)
    rpc_port = rpc_port or free_port(rpc_host)
    log = db.with_name(db.name + ".log")
    offset = log.stat().st_size if log.exists() else 0  # a kept database keeps its log
    command = [
        sys.executable, "-m", "imc_sidecar", "serve",
        "--db-url", db_url,
        "--sip-listen", f"udp:{sip_host}:{sip_port}",
        "--rpc-http", f"{rpc_host}:{rpc_port}",
        # Off: their fixed default ports would collide with a sidecar already running.
        "--rpc-dgram", "off",
        "--rpc-binrpc", "off",
        "--log-level", "info",
    ]
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, env=_clean_environment(),
        )
    started = StartedSidecar(process, db_url, (sip_host, sip_port),
                             f"http://{rpc_host}:{rpc_port}/RPC", log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with log.open("rb") as fh:
            fh.seek(offset)
            if _LISTENING.search(fh.read().decode(errors="replace")):
                return started
        if process.poll() is not None:
            raise SidecarStartError(f"the sidecar exited ({process.returncode}):\n"
                                    + _tail(log))
        time.sleep(0.05)
    started.stop()
    raise SidecarStartError(f"the sidecar did not listen within {timeout:g} s:\n" + _tail(log))


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _clean_environment() -> dict[str, str]:
    """The caller's environment without IMC_* settings (an outbound proxy or history
    turned off there would break the demo's own sidecar)."""
    return {name: value for name, value in os.environ.items() if not name.startswith("IMC_")}
