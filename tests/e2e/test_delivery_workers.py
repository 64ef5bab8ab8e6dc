"""The sidecar with delivery worker processes (`--delivery-workers`), on real sockets.

Members are UDP sockets addressed directly, each on its own loopback address and port
5060 (`sip:user@127.203.0.N`: imc addresses a member by user and domain only), so every
copy leaves from a worker's own port and every answer goes back to it.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from pathlib import Path

import pytest

from .conftest import StartSidecar
from .harness.sipua import free_port
from .sidecar_process import SidecarProcess, rpc_result, sidecar_args, sqlite_url
from .sip_probe import message, status_line

pytestmark = pytest.mark.e2e

_WORKER_LINE = re.compile(r"delivery worker (\d+) \(pid (\d+)\) sends from udp:([^:]+):(\d+)")
_ECHOED = {"via", "from", "to", "call-id", "cseq"}
_MEMBER_HOSTS = {"alice": "127.203.0.1", "bob": "127.203.0.2", "carol": "127.203.0.3"}


class Member:
    """A phone on its own address that answers each MESSAGE with `status` (None:
    never answers)."""

    def __init__(self, name: str, status: str | None = "200 OK") -> None:
        host = _MEMBER_HOSTS[name]
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 5060))
        self.uri = f"sip:{name}@{host}"
        self.status = status
        self.messages: list[bytes] = []
        self.sources: set[int] = set()  # ports the MESSAGEs came from
        self.last_source = 0

    def take(self, count: int, timeout: float = 5.0) -> list[bytes]:
        """Read (and answer) until `count` MESSAGEs arrived in all; return them."""
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.uri}: {len(self.messages)} of {count} MESSAGEs")
            self.sock.settimeout(left)
            try:
                data, source = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            if not data.startswith(b"MESSAGE "):
                continue
            self.messages.append(data)
            self.sources.add(source[1])
            self.last_source = source[1]
            if self.status is None:
                continue
            head = data.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
            keep = [h for h in head[1:] if h.split(":", 1)[0].lower() in _ECHOED]
            reply = f"SIP/2.0 {self.status}\r\n" + "\r\n".join(keep)
            self.sock.sendto((reply + "\r\nContent-Length: 0\r\n\r\n").encode(), source)
        return self.messages

    def say(self, room: str, body: str, target: tuple[str, int]) -> str:
        """Send a MESSAGE from this member to `room`; the reply's status line."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.settimeout(5)
            sender.bind(("127.0.0.1", 0))
            sender.sendto(message(room, body, from_uri=self.uri), target)
            return status_line(sender.recvfrom(65535)[0])

    def close(self) -> None:
        self.sock.close()


def _bodies(messages: list[bytes]) -> list[str]:
    return [m.split(b"\r\n\r\n", 1)[1].decode() for m in messages]



def _settled(rpc_port: int, pending: int = 0) -> None:
    """Wait until `pending` copies are in flight (the other answers reached the sidecar)."""
    deadline = time.monotonic() + 5
    while rpc_result(rpc_port, "stats.fetchn", ["imc:"])["imc.pending_deliveries"] != pending:
        assert time.monotonic() < deadline, "copies still in flight"
        time.sleep(0.02)


def _workers(process: SidecarProcess, count: int) -> dict[int, tuple[int, int]]:
    """index -> (pid, port) of each worker, from the start-up log."""
    found: dict[int, tuple[int, int]] = {}
    for line in process.lines:
        match = _WORKER_LINE.search(line)
        if match:
            found[int(match[1])] = (int(match[2]), int(match[4]))
    assert len(found) == count, process.lines
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes (its parent has not reaped it yet).
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ", 1)[1][0] != "Z"


@pytest.fixture
def rpc_port() -> int:
    return free_port()


def _free_pair() -> int:
    """A UDP port P with P + 1 free as well."""
    for _ in range(50):
        first = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind(("127.0.0.1", first + 1))
            except OSError:
                continue
        return first
    raise RuntimeError("no two free ports in a row")


@pytest.fixture
def delivery_port() -> int:
    return _free_pair()


@pytest.fixture
def sidecar(
    start_sidecar: StartSidecar, sqlite_db: str, rpc_port: int, delivery_port: int
) -> SidecarProcess:
    return start_sidecar(
        sidecar_args(
            sqlite_db, free_port(), "--delivery-workers", "2",
            "--delivery-port", str(delivery_port), "--rpc-http", f"127.0.0.1:{rpc_port}",
        )
    )


def _room(sidecar: SidecarProcess, room: str, owner: Member, *others: Member) -> None:
    """`owner` creates `room`, the others join; every notice is read and answered."""
    target = sidecar.addresses["udp"]
    assert owner.say(room, "#create", target) == "SIP/2.0 200 OK"
    owner.take(1)
    seen = {id(owner): 1}
    for index, member in enumerate(others):
        assert member.say(room, "#join", target) == "SIP/2.0 200 OK"
        # "joined" goes to everyone already in the room, the newcomer included.
        for earlier in (owner, *others[: index + 1]):
            seen[id(earlier)] = seen.get(id(earlier), 0) + 1
            earlier.take(seen[id(earlier)])


def test_copies_leave_from_the_workers_in_order(
    sidecar: SidecarProcess, rpc_port: int, delivery_port: int
) -> None:
    workers = _workers(sidecar, 2)
    worker_ports = {port for _, port in workers.values()}
    assert worker_ports == {delivery_port, delivery_port + 1}
    sip_port = sidecar.addresses["udp"][1]
    members = [Member(name) for name in ("alice", "bob", "carol")]
    try:
        room = "sip:chat-w@example.org"
        _room(sidecar, room, *members)
        alice, bob, carol = members
        before = {id(m): len(m.messages) for m in members}
        for n in range(40):
            assert alice.say(room, f"text {n}", sidecar.addresses["udp"]) == "SIP/2.0 200 OK"
        for member in (bob, carol):
            got = _bodies(member.take(before[id(member)] + 40)[before[id(member)]:])
            assert got == [f"[alice]: text {n}" for n in range(40)]  # in order, once each
        # Each member's copies came from one worker's port, never the listening port.
        assert all(len(member.sources) == 1 for member in members)
        assert (bob.sources | carol.sources | alice.sources) <= worker_ports
        assert sip_port not in bob.sources
        _settled(rpc_port)
        stats = rpc_result(rpc_port, "stats.fetchn", ["imc:"])
        assert stats["imc.sent_messages"] == 6 + 80
        assert stats["imc.failed_deliveries"] == 0
        assert stats["imc.pending_deliveries"] == 0
    finally:
        for member in members:
            member.close()


def test_failed_copies_and_invitations_are_counted_and_handled(
    sidecar: SidecarProcess, rpc_port: int
) -> None:
    alice, bob = Member("alice"), Member("bob", status="404 Not Found")
    try:
        room = "sip:chat-f@example.org"
        target = sidecar.addresses["udp"]
        assert alice.say(room, "#create", target) == "SIP/2.0 200 OK"
        alice.take(1)
        # The invitation fails at bob: the worker reports it, the engine drops bob and
        # tells alice (B11), through a worker again.
        assert alice.say(room, f"#invite {bob.uri}", target) == "SIP/2.0 200 OK"
        bob.take(1)
        assert _bodies(alice.take(2))[1] == "bob@127.203.0.2 is not registered. "
        members = rpc_result(rpc_port, "imc.list_members", [room])
        assert members["members"] == [alice.uri]  # type: ignore[comparison-overlap]
        stats = rpc_result(rpc_port, "stats.fetchn", ["imc:"])
        assert stats["imc.failed_deliveries"] == 1
        assert stats["imc.pending_deliveries"] == 0
    finally:
        alice.close()
        bob.close()


def test_a_killed_worker_costs_its_copies_not_the_server_and_is_restarted(
    sidecar: SidecarProcess, rpc_port: int
) -> None:
    workers = _workers(sidecar, 2)
    alice, bob = Member("alice"), Member("bob")
    try:
        room = "sip:chat-k@example.org"
        _room(sidecar, room, alice, bob)
        assert alice.say(room, "before", sidecar.addresses["udp"]) == "SIP/2.0 200 OK"
        bob.take(2)  # "joined", "before"
        _settled(rpc_port)
        (index, (pid, port)), = [(i, w) for i, w in workers.items() if w[1] in bob.sources]
        os.kill(pid, signal.SIGKILL)
        sidecar.wait_for_line(rf"delivery worker {index} \(pid {pid}\) is gone")
        # Until it is restarted its recipients go to the other worker: nothing is lost.
        assert alice.say(room, "meanwhile", sidecar.addresses["udp"]) == "SIP/2.0 200 OK"
        assert _bodies(bob.take(3))[-1] == "[alice]: meanwhile"
        # Restarted on the same port, it has its recipients back.
        line = sidecar.wait_for_line(rf"delivery worker {index} \(pid (?!{pid}\))\d+\) sends")
        assert line.endswith(f":{port}")
        assert alice.say(room, "after", sidecar.addresses["udp"]) == "SIP/2.0 200 OK"
        got = bob.take(4)
        assert _bodies(got)[-1] == "[alice]: after"
        assert bob.last_source == port
        _settled(rpc_port)
        stats = rpc_result(rpc_port, "stats.fetchn", ["imc:"])
        assert stats["imc.failed_deliveries"] == 0  # it held nothing when it died
        assert stats["imc.delivery_workers"] == 2
        assert stats["imc.delivery_worker_restarts"] == 1
    finally:
        alice.close()
        bob.close()


def test_copies_held_by_a_killed_worker_count_as_failed(
    sidecar: SidecarProcess, rpc_port: int
) -> None:
    workers = _workers(sidecar, 2)
    alice, bob = Member("alice"), Member("bob", status=None)
    try:
        room = "sip:chat-h@example.org"
        target = sidecar.addresses["udp"]
        assert alice.say(room, "#create", target) == "SIP/2.0 200 OK"
        alice.take(1)
        assert alice.say(room, f"#add {bob.uri}", target) == "SIP/2.0 200 OK"
        for n in range(3):
            assert alice.say(room, f"unheard {n}", target) == "SIP/2.0 200 OK"
        alice.take(2)  # "bob joined", answered
        bob.take(4)  # "joined" and three texts, none answered
        (pid, _), = [w for w in workers.values() if w[1] in bob.sources]
        _settled(rpc_port, 4)
        os.kill(pid, signal.SIGKILL)
        sidecar.wait_for_line(r"is gone; 4 copies it held count as failed")
        stats = rpc_result(rpc_port, "stats.fetchn", ["imc:"])
        assert stats["imc.pending_deliveries"] == 0
        assert stats["imc.failed_deliveries"] == 4
    finally:
        alice.close()
        bob.close()


def test_workers_end_with_the_sidecar(tmp_path: Path) -> None:
    for stop in ("term", "kill"):
        port = free_port()
        process = SidecarProcess(
            sidecar_args(sqlite_url(tmp_path), port, "--delivery-workers", "2",
                         "--delivery-port", "0")
        ).start()
        pids = [pid for pid, _ in _workers(process, 2).values()]
        assert all(_alive(pid) for pid in pids)
        if stop == "term":
            assert process.terminate() == 0
        else:
            process.kill()  # SIGKILL: the workers see their channel close and exit
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(pid) for pid in pids), stop


def test_a_delivery_port_in_use_stops_start_up_with_one_clear_line(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        busy = taken.getsockname()[1]
        process = SidecarProcess(
            sidecar_args(sqlite_url(tmp_path), free_port(), "--delivery-workers", "1",
                         "--delivery-port", str(busy))
        )
        with pytest.raises(RuntimeError, match=r"sidecar (did not start|exited)"):
            process.start()
        # Found before anything starts (preflight.py), named by its setting.
        assert process.process is not None and process.process.wait(10) == 2
        assert process.lines == [
            f"imc-sidecar: delivery_port: worker 0 cannot send from udp:127.0.0.1:{busy} "
            "(delivery_port + 0): Address already in use"
        ]
        assert not any("Traceback" in line for line in process.lines), process.lines


def test_a_delivery_port_answers_requests_with_403_and_survives_garbage(
    sidecar: SidecarProcess, rpc_port: int, delivery_port: int
) -> None:
    """A worker's port is not a listener: requests get a clear refusal, junk is dropped,
    and the worker keeps delivering."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.settimeout(5)
        probe.bind(("127.0.0.1", 0))
        worker = ("127.0.0.1", delivery_port)
        for junk in (b"\x00" * 100, b"MESSAGE\r\n\r\n", b"SIP/2.0 200 OK\r\n\r\n", b"\r\n\r\n"):
            probe.sendto(junk, worker)
        probe.sendto(message("sip:chat-w@example.org", "hello"), worker)
        assert status_line(probe.recvfrom(65535)[0]) == "SIP/2.0 403 Delivery Port"
        probe.sendto(message("sip:chat-w@example.org", "", method="OPTIONS"), worker)
        assert status_line(probe.recvfrom(65535)[0]) == "SIP/2.0 200 OK"
    alice, bob = Member("alice"), Member("bob")
    try:
        room = "sip:chat-j@example.org"
        _room(sidecar, room, alice, bob)
        assert alice.say(room, "still here", sidecar.addresses["udp"]) == "SIP/2.0 200 OK"
        assert _bodies(bob.take(2))[-1] == "[alice]: still here"
    finally:
        alice.close()
        bob.close()
    assert rpc_result(rpc_port, "stats.fetchn", ["imc:"])["imc.delivery_workers"] == 2


def test_trusted_sources_guard_the_sip_port_and_every_delivery_port(
    start_sidecar: StartSidecar, sqlite_db: str, rpc_port: int, delivery_port: int
) -> None:
    """With trusted_sources narrowed to the members and the senders (127.0.0.1, 127.203/16),
    a request from 127.0.0.77 gets 403 on the SIP port and on a worker's port and creates
    nothing, and a 200 it forges for a copy in flight completes nothing."""
    sidecar = start_sidecar(sidecar_args(
        sqlite_db, free_port(), "--delivery-workers", "2",
        "--delivery-port", str(delivery_port), "--rpc-http", f"127.0.0.1:{rpc_port}",
        "--trusted-sources", "127.0.0.1,127.203.0.0/16",
    ))
    room = "sip:chat-t@example.org"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        stranger.settimeout(5)
        stranger.bind(("127.0.0.77", 0))
        for target in (sidecar.addresses["udp"], ("127.0.0.1", delivery_port)):
            stranger.sendto(message(room, "#create", from_uri="sip:alice@127.203.0.1"), target)
            assert status_line(stranger.recvfrom(65535)[0]) == "SIP/2.0 403 Forbidden"
        assert rpc_result(rpc_port, "imc.list_rooms", []) == []  # nothing created
        alice, bob = Member("alice"), Member("bob")
        try:
            _room(sidecar, room, alice, bob)
            bob.status = None  # bob holds his answer to the next copy
            assert alice.say(room, "hi", sidecar.addresses["udp"]) == "SIP/2.0 200 OK"
            [copy] = bob.take(2)[-1:]
            # The forged 200 goes where bob's would: the worker port the copy came from.
            head = copy.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
            keep = [h for h in head[1:] if h.split(":", 1)[0].lower() in _ECHOED]
            forged = "SIP/2.0 200 OK\r\n" + "\r\n".join(keep) + "\r\nContent-Length: 0\r\n\r\n"
            stranger.sendto(forged.encode(), ("127.0.0.1", bob.last_source))
            deadline = time.monotonic() + 5
            while True:  # the worker reports the ignored answer with its next report
                stats = rpc_result(rpc_port, "stats.fetchn", ["imc:"])
                if stats["imc.untrusted_responses"] >= 1 or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            assert stats["imc.untrusted_requests"] == 2
            assert stats["imc.untrusted_responses"] == 1
            assert stats["imc.pending_deliveries"] == 1  # the copy is still bob's to answer
        finally:
            alice.close()
            bob.close()
