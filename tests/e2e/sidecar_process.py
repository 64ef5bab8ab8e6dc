"""Run the real `imc-sidecar serve` as a subprocess: the one launcher of the e2e tests."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

_LISTENING = re.compile(r"listening on (udp|tcp):([^:\s]+):(\d+)")


@dataclass
class SidecarProcess:
    """A started sidecar; `addresses` maps transport to the (host, port) it bound, and
    `lines` holds everything it printed.  `command` is how to run it (default: this
    interpreter's `-m imc_sidecar`; the differential test runs the installed script)."""

    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    command: list[str] = field(default_factory=lambda: [sys.executable, "-m", "imc_sidecar"])
    cwd: Path | None = None
    process: subprocess.Popen[str] | None = None
    addresses: dict[str, tuple[str, int]] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    started_in: float = 0.0
    _output_ended: bool = False

    def start(self, timeout: float = 15.0) -> SidecarProcess:
        env = {**os.environ, **self.env}
        began = time.monotonic()
        if self.cwd is not None:
            self.cwd.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [*self.command, "serve", *self.args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=self.cwd,
            start_new_session=True,  # a Ctrl-C of the test run is not the sidecar's
        )
        ready = threading.Event()
        wanted = sum(1 for a in self.args if a.startswith(("udp:", "tcp:")))
        threading.Thread(target=self._read, args=(ready, max(wanted, 1)), daemon=True).start()
        if not ready.wait(timeout):
            self.kill()
            raise RuntimeError("sidecar did not start:\n" + "\n".join(self.lines))
        if self._output_ended or self.process.poll() is not None:
            # Its output ended: it is exiting (poll() alone can still see it running).
            self.process.wait(10)
            raise RuntimeError("sidecar exited:\n" + "\n".join(self.lines))
        self.started_in = time.monotonic() - began
        return self

    def _read(self, ready: threading.Event, wanted: int) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            match = _LISTENING.search(line)
            if match:
                self.addresses[match[1]] = (match[2], int(match[3]))
                if len(self.addresses) >= wanted:
                    ready.set()
        self._output_ended = True
        ready.set()  # process ended; start() reports it

    def wait_for_line(self, pattern: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if regex.search(line):
                    return line
            time.sleep(0.02)
        raise AssertionError(f"no line matching {pattern!r} in:\n" + "\n".join(self.lines))

    def terminate(self, timeout: float = 15.0) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; the exit code (None: never started)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            try:
                return self.terminate(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.lines[-lines:])

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


def sidecar_args(db_url: str, port: int, *extra: str) -> list[str]:
    # The admin RPC defaults are fixed ports (5092-5094): tests running side by side
    # would collide, so a transport is off unless the test names its address.
    rpc_off = [
        f"--{name}=off"
        for name in ("rpc-http", "rpc-dgram", "rpc-binrpc")
        if not any(arg.startswith(f"--{name}") for arg in extra)
    ]
    return [
        "--db-url",
        db_url,
        "--sip-listen",
        f"udp:127.0.0.1:{port}",
        "--sip-listen",
        f"tcp:127.0.0.1:{port}",
        *rpc_off,
        *extra,
    ]


def sqlite_url(directory: Path) -> str:
    return f"sqlite:///{directory / 'imc.sqlite'}"


def rpc_result(port: int, method: str, params: list[object]) -> dict[str, int]:
    """The `result` of a JSON-RPC call to the sidecar's HTTP RPC on 127.0.0.1:`port`."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    request = urllib.request.Request(f"http://127.0.0.1:{port}/RPC", body.encode())
    with urllib.request.urlopen(request, timeout=5) as response:
        result: dict[str, int] = json.loads(response.read())["result"]
    return result
