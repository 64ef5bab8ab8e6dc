"""The systems under test, each started and stopped by the benchmark itself.

* :class:`KamailioImc` -- Debian's Kamailio 5.6 with its imc module: ``engine`` (no
  registrar, members addressed directly) or ``deploy`` (registrar + imc, imc's
  outbound_proxy is itself).  cfgs in ``bench/kamailio/``.
* :class:`Sidecar` -- ``python -m imc_sidecar serve`` on a SQLite file, usage history
  on (``--history 1``, the default) unless asked otherwise, always given explicitly and
  with no ``IMC_*`` variable of the caller's environment (the command line shown in the
  report is then every setting that differs from the defaults).
* :class:`FrontAndSidecar` -- the operators' ``kamailio-snippets/sidecar-front.cfg`` as
  registrar and front proxy, with the sidecar's outbound_proxy pointing back at it.

Kamailio runs with the benchmark's tuning: ``children`` UDP workers, 4 MB UDP receive
buffers (``maxbuffer``; 5.6 has no setting for the send buffer), ``-m`` MB of shared
memory, errors-only logging.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.e2e.harness.kamailio import (
    FRONT_CFG,
    MODULES_DIR,
    Kamailio,
    find_kamailio,
    render_template,
    set_substdefs,
    sip_ping,
)
from tests.e2e.harness.sipua import free_port, free_udp_run

from .layout import DOMAIN, write_dbtext, write_sqlite

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SOCKET_BUFFER = 4 * 1024 * 1024
LOOPBACK = "127.0.0.1"
HISTORY_TABLES = ("imc_sidecar_events", "imc_sidecar_messages")


class SystemError_(RuntimeError):
    """A system did not start or died."""


def kamailio_version() -> str:
    out = subprocess.run([find_kamailio(), "-v"], capture_output=True, text=True, check=False)
    return out.stdout.splitlines()[0].strip() if out.stdout else "?"


def _kamailio_pid(k: Kamailio) -> int:
    proc = getattr(k, "_proc", None)
    if proc is not None:
        return int(proc.pid)
    return int(k.pid_path.read_text().strip())


def _kamailio_command(k: Kamailio) -> str:
    return f"kamailio -f {k.cfg_path.name} -L {MODULES_DIR} -DD -E -m {k.shm_mb} -M {k.pkg_mb}"


def _tune_front(text: str, children: int) -> str:
    """Add the benchmark's socket buffers to the operators' cfg (its values stay as given)."""
    tuning = f"maxbuffer={SOCKET_BUFFER}\n"
    text, n = re.subn(r"^(disable_tcp=yes\n)", r"\g<1>" + tuning, text, flags=re.M)
    if n != 1:
        raise SystemError_("sidecar-front.cfg: no 'disable_tcp=yes' line to add tuning after")
    return re.sub(r'^mpath="[^"]*"', f'mpath="{MODULES_DIR}/"', text, flags=re.M)


class KamailioImc:
    """Kamailio 5.6 + imc; ``mode`` is ``engine`` or ``deploy``."""

    def __init__(
        self,
        workdir: Path,
        mode: str,
        rooms: list[tuple[str, str, int]],
        members: list[tuple[str, str, str, int]],
        *,
        children: int,
        shm_mb: int,
        start_timeout: float = 30.0,
    ) -> None:
        self.workdir = workdir
        self.mode = mode
        self.start_timeout = start_timeout
        self.rooms = rooms
        self.members = members
        self.children = children
        self.shm_mb = shm_mb
        self.port = free_port(LOOPBACK)
        self.target = (LOOPBACK, self.port)
        self.registrar: tuple[str, int] | None = self.target if mode == "deploy" else None
        self.kamailio: Kamailio | None = None
        self.started_in = 0.0

    @property
    def label(self) -> str:
        return "kamailio"

    def _cfg(self) -> str:
        template = (HERE / "kamailio" / f"{self.mode}.cfg.tmpl").read_text()
        return render_template(
            template,
            {
                "CHILDREN": self.children,
                "LISTEN_IP": LOOPBACK,
                "LISTEN_PORT": self.port,
                "DOMAIN": DOMAIN,
                "SOCKET_BUFFER": SOCKET_BUFFER,
                "MODULES_DIR": MODULES_DIR,
                "DBTEXT_DIR": self.workdir / "dbtext",
            },
        )

    def start(self) -> None:
        # imc empties its tables at start and rewrites them only at a clean stop
        write_dbtext(self.workdir / "dbtext", self.rooms, self.members)
        self.kamailio = Kamailio(
            self._cfg(), self.workdir, self.target, name=f"imc-{self.mode}", shm_mb=self.shm_mb
        )
        began = time.monotonic()
        self.kamailio.start(timeout=self.start_timeout)
        self.started_in = time.monotonic() - began

    def stop(self, timeout: float = 10.0) -> None:
        if self.kamailio is not None:
            self.kamailio.stop(timeout=timeout)

    def groups(self) -> dict[str, list[int]]:
        assert self.kamailio is not None
        return {"kamailio": [_kamailio_pid(self.kamailio)]}

    def commands(self) -> list[str]:
        assert self.kamailio is not None
        return [_kamailio_command(self.kamailio) + f"   # bench/kamailio/{self.mode}.cfg.tmpl"]

    def problems(self) -> list[str]:
        return self.kamailio.problems() if self.kamailio is not None else []


class Sidecar:
    """``python -m imc_sidecar serve`` with every RPC listener off (unless ``rpc_http``)."""

    def __init__(
        self,
        workdir: Path,
        rooms: list[tuple[str, str, int]] | None,
        members: list[tuple[str, str, str, int]] | None,
        *,
        outbound_proxy: str | None = None,
        rpc_http_port: int | None = None,
        db_path: Path | None = None,
        port: int | None = None,
        delivery_workers: int = 0,
        delivery_port: int = 0,
        history: bool = True,
        db_url: str | None = None,
    ) -> None:
        self.workdir = workdir
        self.history = history  # usage history (default on, as users get it)
        # another database (PostgreSQL, filled by the caller) instead of the SQLite file
        self.db_url = db_url
        self.delivery_workers = delivery_workers
        self.delivery_port = delivery_port  # 0: ephemeral
        self.rooms = rooms
        self.members = members
        self.outbound_proxy = outbound_proxy
        self.rpc_http_port = rpc_http_port
        self.db_path = db_path or workdir / "imc.sqlite"
        self.port = port or free_port(LOOPBACK)
        self.target = (LOOPBACK, self.port)
        self.registrar: tuple[str, int] | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "sidecar.log"
        self.started_in = 0.0
        self.argv: list[str] = []
        self._prepared = False

    @property
    def label(self) -> str:
        return "sidecar"

    def prepare(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.db_url is None and self.rooms is not None and self.members is not None:
            write_sqlite(self.db_path, self.rooms, self.members)
        self._prepared = True

    def start(self) -> None:
        if not self._prepared:
            self.prepare()
        rpc_http = f"{LOOPBACK}:{self.rpc_http_port}" if self.rpc_http_port else "off"
        self.argv = [
            sys.executable, "-m", "imc_sidecar", "serve",
            "--db-url", self.db_url or f"sqlite:///{self.db_path}",
            "--sip-listen", f"udp:{LOOPBACK}:{self.port}",
            "--rpc-http", rpc_http, "--rpc-dgram", "off", "--rpc-binrpc", "off",
            "--history", "1" if self.history else "0",
        ]  # fmt: skip
        if self.outbound_proxy:
            self.argv += ["--outbound-proxy", self.outbound_proxy]
        if self.delivery_workers:
            self.argv += ["--delivery-workers", str(self.delivery_workers),
                          "--delivery-port", str(self.delivery_port)]
        # only the flags above: no IMC_* setting (or IMC_CONFIG file) of the caller's
        env = {k: v for k, v in os.environ.items() if not k.startswith("IMC_")}
        began = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                env=env,
                start_new_session=True,
            )
        deadline = began + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemError_(f"sidecar exited with {self.proc.returncode}:\n{self.log()}")
            if sip_ping(self.target, timeout=0.05) is not None:
                self.started_in = time.monotonic() - began
                return
        self.stop()
        raise SystemError_(f"sidecar did not answer OPTIONS within 120 s:\n{self.log()}")

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""

    def groups(self) -> dict[str, list[int]]:
        assert self.proc is not None
        return {"sidecar": [self.proc.pid]}

    def history_rows(self) -> dict[str, int]:
        """Rows in the usage-history tables of its database (0 for a table not there)."""
        rows = {}
        with contextlib.closing(sqlite3.connect(self.db_path)) as db:
            for table in HISTORY_TABLES:
                try:
                    rows[table] = int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
                except sqlite3.OperationalError:  # no such table (history off)
                    rows[table] = 0
        return rows

    def commands(self) -> list[str]:
        shown = ["python" if a == sys.executable else a for a in self.argv]
        return [" ".join(shown)]

    def problems(self) -> list[str]:
        return [
            line
            for line in self.log().splitlines()
            if re.search(r"\b(ERROR|CRITICAL|Traceback)\b", line)
        ]


class FrontAndSidecar:
    """kamailio-snippets/sidecar-front.cfg (registrar, front) + the sidecar behind it."""

    def __init__(
        self,
        workdir: Path,
        rooms: list[tuple[str, str, int]],
        members: list[tuple[str, str, str, int]],
        *,
        children: int,
        shm_mb: int,
        delivery_workers: int = 0,
        history: bool = True,
    ) -> None:
        self.workdir = workdir
        self.children = children
        self.shm_mb = shm_mb
        self.port = free_port(LOOPBACK)
        self.target = (LOOPBACK, self.port)
        self.registrar: tuple[str, int] | None = self.target
        self.sidecar = Sidecar(
            workdir / "sidecar",
            rooms,
            members,
            outbound_proxy=f"sip:{LOOPBACK}:{self.port}",
            delivery_workers=delivery_workers,
            # the front recognises the sidecar's copies by these ports
            delivery_port=free_udp_run(LOOPBACK, delivery_workers) if delivery_workers else 0,
            history=history,
        )
        self.front: Kamailio | None = None
        self.started_in = 0.0

    @property
    def label(self) -> str:
        return "front+sidecar"

    def start(self) -> None:
        text = set_substdefs(
            FRONT_CFG.read_text(),
            {
                "FRONT_IP": LOOPBACK,
                "FRONT_PORT": self.port,
                "SIP_DOMAIN": DOMAIN,
                "SIDECAR_IP": LOOPBACK,
                "SIDECAR_PORT": self.sidecar.port,
                "DELIVERY_FIRST_PORT": self.sidecar.delivery_port or 5100,
                "DELIVERY_LAST_PORT": (
                    self.sidecar.delivery_port + self.sidecar.delivery_workers - 1
                    if self.sidecar.delivery_port else 5107
                ),
                "WORKERS": self.children,
                "LOG_LEVEL": 1,
            },
        )
        self.front = Kamailio(
            _tune_front(text, self.children),
            self.workdir / "front",
            self.target,
            name="sidecar-front",
            shm_mb=self.shm_mb,
        )
        began = time.monotonic()
        self.front.start(timeout=30)
        self.sidecar.start()
        self.started_in = time.monotonic() - began

    def stop(self) -> None:
        self.sidecar.stop()
        if self.front is not None:
            self.front.stop()

    def groups(self) -> dict[str, list[int]]:
        assert self.front is not None
        return {"front": [_kamailio_pid(self.front)], **self.sidecar.groups()}

    def commands(self) -> list[str]:
        assert self.front is not None
        return [
            _kamailio_command(self.front) + "   # kamailio-snippets/sidecar-front.cfg",
            *self.sidecar.commands(),
        ]

    def problems(self) -> list[str]:
        front = self.front.problems() if self.front is not None else []
        return front + self.sidecar.problems()


def sidecar_version() -> str:
    out = subprocess.run(
        ["git", "-C", str(REPO), "log", "-1", "--format=%h %cs"],
        capture_output=True,
        text=True,
        check=False,
    )
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--", "imc_sidecar"],
        capture_output=True,
        text=True,
        check=False,
    )
    suffix = " + uncommitted changes in imc_sidecar/" if dirty.stdout.strip() else ""
    return f"imc_sidecar at {out.stdout.strip() or '?'}{suffix}"
