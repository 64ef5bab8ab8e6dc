"""Run a real Kamailio 5.6 for the end-to-end tests.

:class:`Kamailio` writes a rendered cfg into a private working directory, starts
``kamailio -DD -E`` (foreground, log to stderr -> a log file) with small memory pools,
waits until the instance answers an OPTIONS ping, and on :meth:`Kamailio.stop` sends
SIGTERM and returns the log so that failures can quote it.

Two cfg families are rendered here:

* ``tests/e2e/kamailio/imc-reference.cfg.tmpl`` -- the reference: Kamailio's own ``imc``
  module (:func:`imc_reference`); placeholders are ``{{NAME}}``;
* ``kamailio-snippets/sidecar-front.cfg`` -- the operators' front proxy that forwards chat
  URIs to the sidecar (:func:`sidecar_front`); its editable values are the
  ``#!substdef "!NAME!value!g"`` lines at the top, rewritten by :func:`set_substdefs`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

KAMAILIO_BINARY = os.environ.get("IMC_E2E_KAMAILIO", "/usr/sbin/kamailio")
MODULES_DIR = os.environ.get(
    "IMC_E2E_KAMAILIO_MODULES", "/usr/lib/x86_64-linux-gnu/kamailio/modules"
)

REPO_ROOT = Path(__file__).resolve().parents[3]
REFERENCE_TEMPLATE = REPO_ROOT / "tests" / "e2e" / "kamailio" / "imc-reference.cfg.tmpl"
FRONT_CFG = REPO_ROOT / "kamailio-snippets" / "sidecar-front.cfg"

# Lines of a Kamailio log that point at a real problem.
_PROBLEM = re.compile(r"\b(ERROR|CRITICAL|ALERT|BUG|EMERGENCY)\b|segfault|core dumped", re.I)


class KamailioError(RuntimeError):
    """Kamailio is missing, did not start, or did not stop."""


def find_kamailio() -> str:
    """Path of the kamailio binary; raises (tests must FAIL, not skip) when missing."""
    path = KAMAILIO_BINARY if os.path.isabs(KAMAILIO_BINARY) else shutil.which(KAMAILIO_BINARY)
    if not path or not os.access(path, os.X_OK):
        raise KamailioError(f"kamailio binary not found or not executable: {KAMAILIO_BINARY!r}")
    if not Path(MODULES_DIR, "imc.so").exists():
        raise KamailioError(f"kamailio modules (imc.so) not found in {MODULES_DIR}")
    return path


# --------------------------------------------------------------------------- cfg text


def render_template(text: str, values: Mapping[str, object]) -> str:
    """Replace every ``{{NAME}}``; unknown or unused names are errors."""
    wanted = set(re.findall(r"\{\{([A-Z0-9_]+)\}\}", text))
    missing = wanted - set(values)
    unused = set(values) - wanted
    if missing or unused:
        raise KamailioError(f"template values: missing {sorted(missing)}, unused {sorted(unused)}")
    return re.sub(r"\{\{([A-Z0-9_]+)\}\}", lambda m: str(values[m.group(1)]), text)


_SUBSTDEF = re.compile(r'^(#!substdef\s+"!)([A-Z0-9_]+)(!)([^!]*)(!g?")', re.M)


def substdefs(text: str) -> dict[str, str]:
    """The ``#!substdef "!NAME!value!g"`` values of a cfg."""
    return {m.group(2): m.group(4) for m in _SUBSTDEF.finditer(text)}


def set_substdefs(text: str, values: Mapping[str, object]) -> str:
    """Rewrite the values of ``#!substdef "!NAME!value!g"`` lines; every name must exist."""
    present = substdefs(text)
    unknown = set(values) - set(present)
    if unknown:
        raise KamailioError(f"cfg has no #!substdef for {sorted(unknown)}")
    for name, value in values.items():
        if "!" in str(value) or "\n" in str(value):
            raise KamailioError(f"substdef value for {name} may not contain '!' or newline")

    def repl(m: re.Match[str]) -> str:
        name = m.group(2)
        if name in values:
            return f"{m.group(1)}{name}{m.group(3)}{values[name]}{m.group(5)}"
        return m.group(0)

    return _SUBSTDEF.sub(repl, text)


def _cfg_string(value: str) -> str:
    """A Kamailio cfg double-quoted string literal (escapes CR, LF, TAB, quote, backslash)."""
    return (
        '"'
        + value.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\r", "\\r")
        .replace("\n", "\\n")
        .replace("\t", "\\t")
        + '"'
    )


# --------------------------------------------------------------------------- process


def sip_ping(address: tuple[str, int], timeout: float = 0.3) -> str | None:
    """Send one OPTIONS to ``address``; return the status line of the reply, or None."""
    ip, port = address
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((ip if not ip.startswith("127.") else "127.0.0.1", 0))
        lip, lport = sock.getsockname()
        branch = "z9hG4bK" + uuid.uuid4().hex[:16]
        msg = (
            f"OPTIONS sip:{ip}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {lip}:{lport};branch={branch};rport\r\n"
            f"From: <sip:probe@{lip}>;tag={uuid.uuid4().hex[:8]}\r\n"
            f"To: <sip:{ip}:{port}>\r\n"
            f"Call-ID: {uuid.uuid4().hex}@{lip}\r\n"
            "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        sock.settimeout(timeout)
        sock.sendto(msg.encode(), address)
        try:
            data, _ = sock.recvfrom(65535)
        except (TimeoutError, ConnectionRefusedError, OSError):
            return None
        return data.split(b"\r\n", 1)[0].decode(errors="replace")


class Kamailio:
    """One Kamailio instance in its own working directory."""

    def __init__(
        self,
        cfg_text: str,
        workdir: Path,
        listen: tuple[str, int],
        *,
        name: str = "kamailio",
        shm_mb: int = 64,
        pkg_mb: int = 8,
    ) -> None:
        self.cfg_text = cfg_text
        self.dir = workdir
        self.listen = listen
        self.name = name
        self.shm_mb = shm_mb
        self.pkg_mb = pkg_mb
        self.cfg_path = workdir / f"{name}.cfg"
        self.pid_path = workdir / f"{name}.pid"
        self.log_path = workdir / f"{name}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self.listen

    @property
    def uri(self) -> str:
        return f"sip:{self.listen[0]}:{self.listen[1]}"

    def check_cfg(self) -> None:
        """``kamailio -c``: raises with Kamailio's complaint if the cfg does not parse."""
        binary = find_kamailio()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cfg_path.write_text(self.cfg_text)
        proc = subprocess.run(
            [binary, "-c", "-f", str(self.cfg_path), "-L", MODULES_DIR],
            capture_output=True,
            timeout=30,
            check=False,
        )
        if proc.returncode != 0:
            raise KamailioError(
                f"{self.name}: cfg check failed ({proc.returncode}):\n"
                + proc.stderr.decode(errors="replace")[-4000:]
            )

    def start(self, timeout: float = 15.0) -> None:
        binary = find_kamailio()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cfg_path.write_text(self.cfg_text)
        cmd = [
            binary,
            "-f", str(self.cfg_path),
            "-L", MODULES_DIR,
            "-w", str(self.dir),
            "-Y", str(self.dir),
            "-P", str(self.pid_path),
            "-DD",
            "-E",
            "-m", str(self.shm_mb),
            "-M", str(self.pkg_mb),
        ]  # fmt: skip
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self.returncode = self._proc.returncode
                raise KamailioError(
                    f"{self.name} exited during start with {self.returncode}:\n{self.log_tail()}"
                )
            if sip_ping(self.listen, timeout=0.2) is not None:
                return
        self.stop()
        raise KamailioError(
            f"{self.name} did not answer OPTIONS on {self.listen} within {timeout}s:\n"
            + self.log_tail()
        )

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float = 10.0) -> str:
        """SIGTERM, wait (SIGKILL the process group after ``timeout``); returns the log."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        if proc is not None:
            self.returncode = proc.returncode
            # children that outlived the main process (they should not)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        return self.log()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def problems(self) -> list[str]:
        """Log lines that look like errors (ERROR/CRITICAL/BUG, segfaults)."""
        return [line for line in self.log().splitlines() if _PROBLEM.search(line)]

    def __enter__(self) -> Kamailio:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- the two cfgs


def prepare_dbtext(directory: Path) -> Path:
    """Create empty db_text tables ``imc_rooms``, ``imc_members`` and ``version``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "imc_rooms").write_text("id(int,auto) name(string) domain(string) flag(int) \n")
    (directory / "imc_members").write_text(
        "id(int,auto) username(string) domain(string) room(string) flag(int) \n"
    )
    (directory / "version").write_text(
        "id(int,auto) table_name(string) table_version(int) \n0:imc_rooms:1\n0:imc_members:1\n"
    )
    return directory


def imc_reference(
    workdir: Path,
    listen: tuple[str, int],
    *,
    domain: str,
    create_on_join: int = 1,
    check_on_create: int = 0,
    cmd_start_char: str = "#",
    hash_size: int = 4,
    extra_hdrs: str | None = None,
    fr_timer_ms: int = 2000,
    debug: int = 2,
    name: str = "imc-reference",
    fresh_db: bool = True,
) -> Kamailio:
    """A Kamailio running the real imc module (not started yet).

    ``fresh_db=False`` keeps the db_text tables of an earlier run in ``workdir``.
    """
    dbtext = workdir / "dbtext"
    if fresh_db or not (dbtext / "imc_rooms").exists():
        prepare_dbtext(dbtext)
    extra = f'modparam("imc", "extra_hdrs", {_cfg_string(extra_hdrs)})' if extra_hdrs else ""
    if '"' in cmd_start_char or "\\" in cmd_start_char:
        raise KamailioError("unsupported imc_cmd_start_char")
    text = render_template(
        REFERENCE_TEMPLATE.read_text(),
        {
            "DEBUG": debug,
            "LISTEN_IP": listen[0],
            "LISTEN_PORT": listen[1],
            "DOMAIN": domain,
            "MODULES_DIR": MODULES_DIR,
            "FR_TIMER_MS": fr_timer_ms,
            "DBTEXT_DIR": dbtext,
            "CREATE_ON_JOIN": int(create_on_join),
            "CHECK_ON_CREATE": int(check_on_create),
            "CMD_START_CHAR": cmd_start_char,
            "HASH_SIZE": hash_size,
            "EXTRA_HDRS_MODPARAM": extra,
        },
    )
    return Kamailio(text, workdir, listen, name=name)


def sidecar_front(
    workdir: Path,
    listen: tuple[str, int],
    *,
    domain: str,
    sidecar: tuple[str, int],
    delivery_ports: tuple[int, int] = (5100, 5107),
    workers: int = 1,
    debug: int = 2,
    name: str = "sidecar-front",
) -> Kamailio:
    """The operators' front cfg (kamailio-snippets/sidecar-front.cfg) with test addresses;
    `delivery_ports`: first and last port of the sidecar's delivery workers."""
    text = set_substdefs(
        FRONT_CFG.read_text(),
        {
            "FRONT_IP": listen[0],
            "FRONT_PORT": listen[1],
            "SIP_DOMAIN": domain,
            "SIDECAR_IP": sidecar[0],
            "SIDECAR_PORT": sidecar[1],
            "DELIVERY_FIRST_PORT": delivery_ports[0],
            "DELIVERY_LAST_PORT": delivery_ports[1],
            "WORKERS": workers,
            "LOG_LEVEL": debug,
        },
    )
    # tests run Debian's modules from their standard place; operators keep the default
    text = re.sub(r'^mpath="[^"]*"', f'mpath="{MODULES_DIR}/"', text, flags=re.M)
    return Kamailio(text, workdir, listen, name=name)
