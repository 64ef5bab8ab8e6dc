"""Operators can move between Kamailio's imc and the sidecar on the same database.

The sidecar writes rooms into tables made by `sql/<kind>/imc-create.sql`; Debian's
Kamailio 5.6 imc (db_mysql / db_postgres) loads them, serves them, gains a member and
writes everything back at its clean shutdown; the sidecar loads that again.  Each user
is in one room only, because Kamailio's PostgreSQL shutdown save corrupts users in
several rooms (imc-reference.md B13) — a Kamailio bug, not ours.
"""

from __future__ import annotations

import json
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest

from .databases import scratch_database
from .harness.kamailio import MODULES_DIR, Kamailio
from .harness.sipua import free_port
from .sidecar_process import SidecarProcess, sidecar_args
from .sip_answerer import Answerer
from .sip_probe import message, status_line

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
DOMAIN = "shared.test"
KAMCMD = "/usr/sbin/kamcmd"

_CFG = """#!KAMAILIO
debug=2
log_stderror=yes
children=1
listen=udp:{ip}:{port}
mpath="{modules}"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "textops.so"
loadmodule "ctl.so"
loadmodule "{db_module}"
loadmodule "imc.so"
modparam("tm", "fr_timer", 1000)
modparam("ctl", "binrpc", "tcp:127.0.0.1:{ctl_port}")
modparam("imc", "db_url", "{db_url}")
modparam("imc", "outbound_proxy", "sip:{answerer}")
request_route {{
    if (is_method("OPTIONS")) {{ sl_send_reply("200", "ok"); exit; }}
    if (is_method("MESSAGE")) {{
        if (imc_manager()) {{ sl_send_reply("200", "ok"); }}
        else {{ sl_send_reply("500", "command error"); }}
        exit;
    }}
    sl_send_reply("405", "Method Not Allowed");
}}
"""


def _send(target: tuple[str, int], user: str, room: str, body: str) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        via = f"127.0.0.1:{sock.getsockname()[1]}"
        sock.sendto(message(f"sip:{room}@{DOMAIN}", body, from_uri=f"sip:{user}@{DOMAIN}",
                            via_host=via), target)
        return status_line(sock.recv(65535))


def _load_script(kind: str, db_url: str) -> None:
    name = db_url.rsplit("/", 1)[1]
    script = REPO / "sql" / ("mysql" if kind == "mariadb" else "postgres") / "imc-create.sql"
    if kind == "mariadb":
        cmd = ["mariadb", "-uroot", "-h127.0.0.1", f"-D{name}"]
    else:
        cmd = ["psql", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", name, "-v",
               "ON_ERROR_STOP=1"]
    subprocess.run(cmd, input=script.read_text(), check=True, capture_output=True, text=True)


def _members_over_http(port: int, room: str) -> list[str]:
    request = json.dumps({"jsonrpc": "2.0", "method": "imc.list_members",
                          "params": [f"sip:{room}@{DOMAIN}"], "id": 1}).encode()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/RPC", request, timeout=5) as reply:
        result: list[str] = json.load(reply)["result"]["members"]
    return result


@pytest.mark.parametrize("kind", ["mariadb", "postgres"])
def test_sidecar_and_kamailio_share_the_tables(kind: str, tmp_path: Path) -> None:
    answerer = Answerer()
    with scratch_database(kind, tmp_path) as (db_url, query):
        _load_script(kind, db_url)
        port, rpc_port = free_port(), free_port()
        args = sidecar_args(db_url, port, "--outbound-proxy", answerer.uri,
                            "--rpc-http", f"127.0.0.1:{rpc_port}")
        sidecar = SidecarProcess(args).start()
        try:
            target = ("127.0.0.1", port)
            assert _send(target, "alice", "chat-a", "#create") == "SIP/2.0 200 OK"
            assert _send(target, "bob", "chat-a", "#join") == "SIP/2.0 200 OK"
            assert _send(target, "dave", "chat-p", "#create private") == "SIP/2.0 200 OK"
            assert _send(target, "dave", "chat-p", "#invite carol") == "SIP/2.0 200 OK"
        finally:
            assert sidecar.terminate() == 0

        # Kamailio 5.6 imc on the same tables.
        module = "db_mysql.so" if kind == "mariadb" else "db_postgres.so"
        k_ip, ctl_port = "127.0.2.9", free_port()
        k_port = free_port(k_ip)
        cfg = _CFG.format(ip=k_ip, port=k_port, modules=MODULES_DIR, db_module=module,
                          db_url=db_url, ctl_port=ctl_port,
                          answerer=f"{answerer.address[0]}:{answerer.address[1]}")
        kamailio = Kamailio(cfg, tmp_path / "kamailio", (k_ip, k_port), name=f"imc-{kind}")
        kamailio.start()
        try:
            rooms = subprocess.run([KAMCMD, "-s", f"tcp:127.0.0.1:{ctl_port}",
                                    "imc.list_rooms"], capture_output=True, text=True,
                                   timeout=10).stdout
            assert f"room: sip:chat-a@{DOMAIN}" in rooms, rooms + kamailio.log_tail()
            assert f"room: sip:chat-p@{DOMAIN}" in rooms, rooms
            # The private flag came across: Kamailio refuses a plain #join.
            assert _send((k_ip, k_port), "mallory", "chat-p", "#join") == "SIP/2.0 200 ok"
            assert _send((k_ip, k_port), "erin", "chat-a", "#join") == "SIP/2.0 200 ok"
        finally:
            kamailio.stop()
        private_members = {r[0] for r in query(
            f"SELECT username FROM imc_members WHERE room = 'sip:chat-p@{DOMAIN}'")}
        assert private_members == {"dave", "carol"}, "mallory joined a private room"
        assert {r[0] for r in query("SELECT name FROM imc_rooms WHERE flag = 1")} == {"chat-p"}

        # And back: the sidecar serves what Kamailio saved, erin included.
        sidecar = SidecarProcess(args).start()
        try:
            assert sorted(_members_over_http(rpc_port, "chat-a")) == [
                f"sip:alice@{DOMAIN}", f"sip:bob@{DOMAIN}", f"sip:erin@{DOMAIN}"]
            assert sorted(_members_over_http(rpc_port, "chat-p")) == [
                f"sip:carol@{DOMAIN}", f"sip:dave@{DOMAIN}"]
            assert _send(("127.0.0.1", port), "mallory", "chat-p", "#join") == "SIP/2.0 200 OK"
            assert _send(("127.0.0.1", port), "mallory", "chat-p", "hi") == (
                "SIP/2.0 500 Not a member of the room")
        finally:
            assert sidecar.terminate() == 0
    answerer.close()
