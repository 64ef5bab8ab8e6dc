"""A PostgreSQL server of the test's own: a fresh cluster on a free port, which a test
may stop, start, freeze and thaw without touching the machine's shared instance."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from .harness.sipua import free_port


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise FileNotFoundError(f"PostgreSQL's {name} is missing: install Debian's postgresql")
    return found[-1]


class PrivatePostgres:
    """`initdb` into a temporary folder, then `pg_ctl` it; trust authentication for
    `postgres` over TCP on 127.0.0.1:`port` only."""

    def __init__(self) -> None:
        # Not under pytest's tmp_path: PostgreSQL refuses to run as root, and the
        # postgres user cannot enter root's 0700 folders.
        self.root = Path(tempfile.mkdtemp(prefix="imc-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        os.chmod(self.root, 0o755)
        self._as_owner(["mkdir", "-p", str(self.data)], chown=True)
        self._as_owner([_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                        "--no-sync", "-E", "UTF8"])

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c full_page_writes=off")
        self._as_owner([_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-w",
                        "-l", str(self.root / "log"), "start"])

    def stop(self, mode: str = "immediate") -> None:
        """`immediate`: as abrupt as a crash (connections cut, no checkpoint)."""
        self._as_owner([_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"],
                       check=False)

    def freeze(self) -> None:
        """Stop every process of the server (SIGSTOP): connections stay open and nothing
        answers, like a database host that hangs."""
        for pid in self._pids():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self._pids():
            os.kill(pid, signal.SIGCONT)

    def query(self, sql: str) -> list[tuple[str, ...]]:
        out = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d",
             "postgres", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", sql],
            check=True, capture_output=True, text=True, timeout=30,
        ).stdout
        return [tuple(line.split("\t")) for line in out.splitlines() if line]

    def close(self) -> None:
        self.thaw()
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def _pids(self) -> list[int]:
        pid_file = self.data / "postmaster.pid"
        if not pid_file.exists():
            return []
        postmaster = int(pid_file.read_text().split()[0])
        children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True,
                                  text=True, check=False).stdout.split()
        return [postmaster, *(int(pid) for pid in children)]

    def _as_owner(self, cmd: list[str], *, chown: bool = False, check: bool = True) -> None:
        """Run `cmd` as the postgres user when we are root (PostgreSQL insists)."""
        if os.geteuid() == 0:
            if chown:
                subprocess.run(["chown", "postgres:postgres", str(self.root)], check=True)
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=120)
