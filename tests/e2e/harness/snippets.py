"""The complete configs of kamailio-snippets/ with test addresses, and kamcmd.

* :func:`one_sidecar` -- ``one-sidecar.cfg`` with its ``sidecars.address``;
* :func:`dispatcher` -- ``dispatcher.cfg`` with its ``dispatcher.list`` and
  ``dispatcher-sidecars.address``;
* :func:`dispatcher_states` -- ``kamcmd dispatcher.list`` against the instance's ctl
  socket, as ``{destination URI: flags}`` (``AP`` active, ``IP`` inactive, ...).

Only the values of the ``#!substdef`` lines change (and ``mpath``, to Debian's modules):
the routing is the file the operators copy.  The two data files are written as an
operator would, one line per SIP port and delivery port of each sidecar.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .kamailio import MODULES_DIR, REPO_ROOT, Kamailio, set_substdefs
from .sipua import free_port

SNIPPETS = REPO_ROOT / "kamailio-snippets"
ONE_SIDECAR_CFG = SNIPPETS / "one-sidecar.cfg"
DISPATCHER_CFG = SNIPPETS / "dispatcher.cfg"
KAMCMD = "/usr/sbin/kamcmd"


@dataclass(frozen=True)
class SidecarAt:
    """Where a sidecar listens (UDP) and the ports its delivery workers send from."""

    ip: str
    port: int
    delivery_ports: tuple[int, ...] = ()

    @property
    def uri(self) -> str:
        return f"sip:{self.ip}:{self.port};transport=udp"

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.port, *self.delivery_ports)


def address_lines(sidecars: list[SidecarAt]) -> str:
    """The permissions address file: group 1, each SIP and delivery port of each."""
    return "".join(
        f"1 {sidecar.ip} 32 {port}\n" for sidecar in sidecars for port in sidecar.ports
    )


@dataclass
class Front:
    """A rendered, not yet started Kamailio and how to reach it."""

    kamailio: Kamailio
    listen: tuple[str, int]
    ws_port: int
    ctl: str  # kamcmd's -s argument

    def kamcmd(self, *args: str) -> str:
        proc = subprocess.run(
            [KAMCMD, "-s", self.ctl, *args], capture_output=True, text=True, timeout=10,
            check=False,
        )
        if proc.returncode != 0 or proc.stdout.startswith("error"):
            raise RuntimeError(f"kamcmd {args}: {proc.stdout}{proc.stderr}")
        return proc.stdout


def _render(
    template: Path, workdir: Path, listen: tuple[str, int], values: dict[str, object]
) -> Front:
    ws_port = free_port(listen[0], avoid=(listen[1],))
    ctl_port = free_port(listen[0], avoid=(listen[1], ws_port))
    ctl = f"tcp:{listen[0]}:{ctl_port}"
    text = set_substdefs(
        template.read_text(),
        {
            "FRONT_IP": listen[0],
            "FRONT_PORT": listen[1],
            "WS_PORT": ws_port,
            "CTL_SOCKET": ctl,
            **values,
        },
    )
    text = re.sub(r'^mpath="[^"]*"', f'mpath="{MODULES_DIR}/"', text, flags=re.M)
    kamailio = Kamailio(text, workdir, listen, name=template.stem)
    return Front(kamailio, listen, ws_port, ctl)


def one_sidecar(
    workdir: Path,
    listen: tuple[str, int],
    *,
    domain: str,
    sidecar: SidecarAt,
    workers: int = 1,
    debug: int = 2,
) -> Front:
    workdir.mkdir(parents=True, exist_ok=True)
    addresses = workdir / "sidecars.address"
    addresses.write_text(address_lines([sidecar]))
    return _render(ONE_SIDECAR_CFG, workdir, listen, {
        "SIP_DOMAIN": domain,
        "SIDECAR_IP": sidecar.ip,
        "SIDECAR_PORT": sidecar.port,
        "SIDECARS_ADDRESS_FILE": addresses,
        "WORKERS": workers,
        "LOG_LEVEL": debug,
    })


def dispatcher(
    workdir: Path,
    listen: tuple[str, int],
    *,
    domain: str,
    sidecars: list[SidecarAt],
    probe_interval: int = 1,
    probe_timeout_ms: int = 1000,
    chat_timeout_ms: int = 12000,
    workers: int = 2,
    debug: int = 2,
) -> Front:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "dispatcher.list").write_text(
        "".join(f"1 {sidecar.uri} 0 0\n" for sidecar in sidecars)
    )
    (workdir / "dispatcher-sidecars.address").write_text(address_lines(sidecars))
    return _render(DISPATCHER_CFG, workdir, listen, {
        "SIP_DOMAIN": domain,
        "FILES_DIR": workdir,
        "PROBE_INTERVAL": probe_interval,
        "PROBE_TIMEOUT": probe_timeout_ms,
        "CHAT_TIMEOUT": chat_timeout_ms,
        "WORKERS": workers,
        "LOG_LEVEL": debug,
    })


_DEST = re.compile(r"URI:\s*(\S+)\s*\n\s*FLAGS:\s*(\S+)")


def dispatcher_states(front: Front) -> dict[str, str]:
    """``{URI: FLAGS}`` of every destination, from ``kamcmd dispatcher.list``."""
    return dict(_DEST.findall(front.kamcmd("dispatcher.list")))
