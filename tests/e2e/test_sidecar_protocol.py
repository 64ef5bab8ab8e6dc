"""The real sidecar process on real sockets: lifecycle, SIP edge cases, framing."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import StartSidecar
from .harness.sipua import free_port
from .sidecar_process import SidecarProcess, rpc_result, sidecar_args, sqlite_url
from .sip_probe import UdpProbe, message, status_line

pytestmark = pytest.mark.e2e


@pytest.fixture
def probe() -> Iterator[UdpProbe]:
    p = UdpProbe()
    yield p
    p.close()


@pytest.fixture
def sidecar(start_sidecar: StartSidecar, sqlite_db: str, probe: UdpProbe) -> SidecarProcess:
    proxy = f"sip:{probe.address[0]}:{probe.address[1]}"
    return start_sidecar(sidecar_args(sqlite_db, free_port(), "--outbound-proxy", proxy))


def _collect(probe: UdpProbe, replies: int, notices: int) -> tuple[list[bytes], list[bytes]]:
    """Read until `replies` responses and `notices` MESSAGEs arrived; answer each MESSAGE 200."""
    got_replies: list[bytes] = []
    got_notices: list[bytes] = []
    while len(got_replies) < replies or len(got_notices) < notices:
        data = probe.receive()
        if data.startswith(b"SIP/2.0 "):
            got_replies.append(data)
            continue
        got_notices.append(data)
        head = data.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
        keep = [h for h in head[1:] if h.split(":", 1)[0].lower() in _ECHOED]
        reply = "SIP/2.0 200 OK\r\n" + "\r\n".join(keep) + "\r\nContent-Length: 0\r\n\r\n"
        probe.sock.sendto(reply.encode(), _via_address(data))
    return got_replies, got_notices


_ECHOED = {"via", "from", "to", "call-id", "cseq"}


def _via_address(data: bytes) -> tuple[str, int]:
    for line in data.split(b"\r\n"):
        if line.lower().startswith(b"via:"):
            host, port = line.split()[2].split(b";")[0].decode().rsplit(":", 1)
            return host, int(port)
    raise AssertionError("no Via")


def test_one_log_line_per_listener_and_clean_stop(sidecar: SidecarProcess) -> None:
    listening = [line for line in sidecar.lines if "listening on" in line]
    assert len(listening) == 2
    assert {"udp", "tcp"} == set(sidecar.addresses)
    assert sidecar.terminate() == 0
    sidecar.wait_for_line("stopping")


def test_options_answered_200_other_methods_405(
    sidecar: SidecarProcess, probe: UdpProbe
) -> None:
    target = sidecar.addresses["udp"]
    reply = probe.exchange(message("sip:chat-1@127.0.0.1", "", method="OPTIONS"), target)
    assert status_line(reply) == "SIP/2.0 200 OK"
    reply = probe.exchange(message("sip:chat-1@127.0.0.1", "", method="SUBSCRIBE"), target)
    assert status_line(reply).startswith("SIP/2.0 405 ")
    assert b"\r\nAllow: " in reply and b"MESSAGE" in reply


def test_malformed_requests_get_400_with_reason_or_are_dropped(
    sidecar: SidecarProcess, probe: UdpProbe
) -> None:
    target = sidecar.addresses["udp"]
    bad_length = message("sip:chat-1@127.0.0.1", "#create").replace(
        b"Content-Length: 7", b"Content-Length: 70"
    )
    reply = probe.exchange(bad_length, target)
    assert status_line(reply).startswith("SIP/2.0 400 ")
    assert len(status_line(reply)) > len("SIP/2.0 400 ")
    probe.sock.sendto(b"\x00\xffnot sip at all\r\n\r\n", target)
    with pytest.raises(socket.timeout):
        probe.receive(timeout=0.5)
    # Still serving after hostile input.
    reply = probe.exchange(message("sip:chat-1@127.0.0.1", "", method="OPTIONS"), target)
    assert status_line(reply) == "SIP/2.0 200 OK"


def test_create_notice_goes_through_outbound_proxy(
    sidecar: SidecarProcess, probe: UdpProbe
) -> None:
    probe.sock.sendto(message("sip:chat-1@example.org", "#create"), sidecar.addresses["udp"])
    (reply,), (notice,) = _collect(probe, replies=1, notices=1)
    assert status_line(reply) == "SIP/2.0 200 OK"
    assert notice.startswith(b"MESSAGE sip:alice@127.0.0.1 SIP/2.0\r\n")
    assert b"From: <sip:chat-1@example.org>;tag=" in notice
    assert b"Supported: kamailio/imc\r\n" in notice
    assert notice.endswith(b"\r\n\r\n*** Room was created")


def test_retransmitted_command_is_processed_once(
    sidecar: SidecarProcess, probe: UdpProbe, tmp_path: Path
) -> None:
    target = sidecar.addresses["udp"]
    request = message(
        "sip:chat-2@example.org", "#join", from_uri="sip:bob@example.org", branch="z9hG4bKfixed1"
    )
    probe.sock.sendto(request, target)
    (first,), _ = _collect(probe, replies=1, notices=1)
    probe.sock.sendto(request, target)
    (second,), _ = _collect(probe, replies=1, notices=0)
    assert second == first
    with pytest.raises(socket.timeout):  # no second "Room was created"
        probe.receive(timeout=0.5)
    with sqlite3.connect(tmp_path / "imc.sqlite") as db:
        rows = db.execute("select username, room, flag from imc_members").fetchall()
    assert rows == [("bob", "sip:chat-2@example.org", 1)]


def test_tcp_framing_split_and_pipelined_and_keepalive(sidecar: SidecarProcess) -> None:
    target = sidecar.addresses["tcp"]
    options = [
        message("sip:chat-1@127.0.0.1", "", method="OPTIONS", transport="TCP") for _ in range(2)
    ]
    with socket.create_connection(target, timeout=3) as conn:
        conn.sendall(b"\r\n\r\n")
        assert conn.recv(2) == b"\r\n"
        joined = options[0] + options[1]
        conn.sendall(joined[:10])
        time.sleep(0.05)
        conn.sendall(joined[10:])
        data = b""
        while data.count(b"SIP/2.0 200 OK") < 2:
            chunk = conn.recv(65535)
            assert chunk, "connection closed"
            data += chunk


@pytest.mark.parametrize(
    ("flag", "value", "named", "says"),
    [
        ("--hash-size", "banana", "hash_size", "integer"),
        # A header name that is an HTTP token but not a SIP one: once accepted here, every
        # notice carrying it was refused "400 Malformed header line" by the sidecar's own
        # parser (and by a front proxy).
        ("--extra-hdrs", "X|Y: 1", "extra_hdrs", "'X|Y' is not a valid SIP header name"),
    ],
)
def test_bad_setting_stops_startup_with_one_clear_line(
    tmp_path: Path, flag: str, value: str, named: str, says: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "imc_sidecar", "serve", flag, value],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{named}: ") or f" {named}: " in lines[0], lines[0]
    assert says in lines[0]
    assert not (tmp_path / "imc-sidecar.sqlite").exists()  # refused before anything started


def test_every_listen_address_is_checked_before_anything_starts(tmp_path: Path) -> None:
    """A unix socket in a missing folder and a port already taken are each named by
    their setting, on one line each, and nothing starts listening."""
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        busy = taken.getsockname()[1]
        missing = tmp_path / "no-such-folder" / "ctl.sock"
        result = subprocess.run(
            [sys.executable, "-m", "imc_sidecar", "serve",
             "--sip-listen", f"udp:127.0.0.1:{free_port()}",
             "--rpc-http", f"127.0.0.1:{busy}", "--rpc-dgram", "",
             "--rpc-binrpc", f"unix:{missing}"],
            capture_output=True, text=True, timeout=30, cwd=tmp_path,
        )
    finally:
        taken.close()
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"imc-sidecar: rpc_http: cannot listen on tcp:127.0.0.1:{busy}: ")
    assert lines[1] == (
        f"imc-sidecar: rpc_binrpc: cannot listen on unix:{missing}: the folder "
        f"{missing.parent} does not exist (create it first)"
    )
    assert not (tmp_path / "imc-sidecar.sqlite").exists()


@pytest.mark.parametrize("workers", ["0", "1"])
def test_outbound_proxy_over_tcp_with_extra_hdrs(
    tmp_path: Path, probe: UdpProbe, workers: str
) -> None:
    """`;transport=tcp` on outbound_proxy: notices leave over a TCP connection we dial
    (delivery workers send over UDP only, so with one the main process still does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as proxy:
        proxy.bind(("127.0.0.1", 0))
        proxy.listen(1)
        proxy.settimeout(5)
        host, proxy_port = proxy.getsockname()
        port = free_port()
        process = SidecarProcess(
            sidecar_args(
                sqlite_url(tmp_path),
                port,
                "--outbound-proxy",
                f"sip:{host}:{proxy_port};transport=tcp",
                "--extra-hdrs",
                "X-Room-Service: imc\\r\\nP-Hint: one",
                "--delivery-workers",
                workers,
                "--delivery-port",
                "0",
            )
        ).start()
        try:
            probe.sock.sendto(message("sip:chat-t@example.org", "#create"), ("127.0.0.1", port))
            assert status_line(probe.receive()) == "SIP/2.0 200 OK"
            conn, _ = proxy.accept()
            with conn:
                conn.settimeout(5)
                data = b""
                while b"*** Room was created" not in data:
                    chunk = conn.recv(65535)
                    assert chunk, "connection closed"
                    data += chunk
        finally:
            process.kill()
    assert data.startswith(b"MESSAGE sip:alice@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP ")
    head = data.split(b"\r\n\r\n", 1)[0]
    lines = head.split(b"\r\n")
    names = [line.split(b":", 1)[0] for line in lines[1:]]
    # Kamailio 5.6's order: Content-Type, Supported, extra_hdrs, In-Reply-To.
    imc = [n for n in names if n in {b"Content-Type", b"Supported", b"X-Room-Service",
                                     b"P-Hint", b"In-Reply-To"}]
    assert imc == [b"Content-Type", b"Supported", b"X-Room-Service", b"P-Hint", b"In-Reply-To"]
    assert b"X-Room-Service: imc" in lines and b"P-Hint: one" in lines


def test_db_create_makes_kamailio_tables(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "imc_sidecar", "db", "create", "--db-url", sqlite_url(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(tmp_path / "imc.sqlite") as db:
        versions = dict(db.execute("select table_name, table_version from version"))
    assert versions["imc_rooms"] == 1 and versions["imc_members"] == 1


def test_stop_waits_for_outstanding_messages_and_refuses_new_ones(
    tmp_path: Path, probe: UdpProbe
) -> None:
    """SIGTERM: writes finish, unanswered notices get a grace period, new MESSAGEs get 503."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent_proxy:
        silent_proxy.bind(("127.0.0.1", 0))  # receives notices, never answers
        host, proxy_port = silent_proxy.getsockname()
        port = free_port()
        process = SidecarProcess(
            sidecar_args(sqlite_url(tmp_path), port, "--outbound-proxy", f"sip:{host}:{proxy_port}")
        ).start()
        target = ("127.0.0.1", port)
        probe.sock.sendto(message("sip:chat-s@example.org", "#create"), target)
        assert status_line(probe.receive()) == "SIP/2.0 200 OK"
        assert process.process is not None
        process.process.send_signal(15)
        process.wait_for_line("stopping")
        probe.sock.sendto(message("sip:chat-s@example.org", "hello"), target)
        assert status_line(probe.receive()) == "SIP/2.0 503 Shutting down"
        assert process.process.wait(15) == 0
        # The "Room was created" notice was never answered: given up after the grace.
        process.wait_for_line("1 MESSAGEs still unanswered after 5 s: given up")
    with sqlite3.connect(tmp_path / "imc.sqlite") as db:
        assert db.execute("select name, flag from imc_rooms").fetchall() == [("chat-s", 0)]


@pytest.mark.parametrize("workers", ["0", "2"])
def test_overloaded_sidecar_refuses_chat_with_503_and_keeps_serving_commands(
    tmp_path: Path, probe: UdpProbe, workers: str
) -> None:
    """Past max_pending_deliveries unanswered MESSAGEs a chat text gets 503 + Retry-After;
    copies held by delivery workers count like the main process's own."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent_proxy:
        silent_proxy.bind(("127.0.0.1", 0))  # receives every MESSAGE, never answers
        host, proxy_port = silent_proxy.getsockname()
        port = free_port()
        rpc = free_port()
        process = SidecarProcess(
            sidecar_args(
                sqlite_url(tmp_path), port, "--outbound-proxy", f"sip:{host}:{proxy_port}",
                "--max-pending-deliveries", "2", "--rpc-http", f"127.0.0.1:{rpc}",
                "--delivery-workers", workers, "--delivery-port", "0",
            )
        ).start()
        try:
            target = ("127.0.0.1", port)
            room = "sip:chat-o@example.org"
            bob = "sip:bob@127.0.0.1"
            for body, sender in (("#create", "sip:alice@127.0.0.1"), ("#join", bob)):
                probe.sock.sendto(message(room, body, from_uri=sender), target)
                assert status_line(probe.receive()) == "SIP/2.0 200 OK"
            # Three notices are unanswered: a text for one more copy is refused.
            probe.sock.sendto(message(room, "hello", from_uri=bob), target)
            refused = probe.receive()
            assert status_line(refused) == "SIP/2.0 503 Service Unavailable"
            assert b"\r\nRetry-After: 1\r\n" in refused
            # Commands are still served.
            probe.sock.sendto(message(room, "#members", from_uri=bob), target)
            assert status_line(probe.receive()) == "SIP/2.0 200 OK"
            stats = rpc_result(rpc, "stats.fetchn", ["imc:"])
            assert stats["imc.refused_messages"] == 1 and stats["imc.chat_messages"] == 0
            assert stats["imc.pending_deliveries"] == 4  # 3 notices + the member list
        finally:
            process.kill()

