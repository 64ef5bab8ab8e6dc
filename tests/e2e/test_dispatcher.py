"""kamailio-snippets/dispatcher.cfg: two sidecars on one database behind Debian's
Kamailio 5.6, rooms hashed over them, failover when one is killed, fail-back after.

Each sidecar listens on its own loopback address and runs a delivery worker, so every
MESSAGE a member receives names, in the Via under Kamailio's, the sidecar that served
its room: that is how the tests see where a room lives.  The dispatcher's view comes
from ``kamcmd dispatcher.list`` on Kamailio's ctl socket.

* :func:`test_rooms_spread_over_two_sidecars_and_fail_over` -- the routing: the hash of
  the lower-cased room name spreads the rooms and keeps each on one sidecar; a 503 with
  Retry-After reaches the phone as it is and moves nothing; a request to a killed
  sidecar goes to the other after CHAT_TIMEOUT (failure_route), the dead one is out of
  the set, later requests go straight to the other, and once it is back and answers a
  probe its rooms return to it.
* :func:`test_rooms_keep_every_member_across_failover` -- the same moves with
  conversations, on PostgreSQL and on MariaDB: the killed sidecar's rooms keep every
  member and invitation on the other one, memberships change meanwhile, and after
  fail-back, commands that name their room but reach the other sidecar (through the
  manager URI or another room) find no stale member list there and reach the room's
  home within the change feed's 1 s; no MESSAGE is lost, doubled or sent to a
  non-member.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from imc_sidecar.imc.texts import HELP
from imc_sidecar.policy.requests import SLOW_DOWN

from .conftest import StartSidecar
from .databases import scratch_database
from .harness.chatlog import ROOM_CREATED, Conversation, invited_by, joined, left
from .harness.phones import Phone, Received
from .harness.sipua import free_port, free_udp_run, udp_port_is_bound
from .harness.snippets import Front, SidecarAt, dispatcher, dispatcher_states
from .sidecar_process import SidecarProcess

pytestmark = pytest.mark.e2e

DOMAIN = "dispatch.test"
FRONT_IP = "127.0.0.1"
SIDECAR_IPS = {"A": "127.0.8.1", "B": "127.0.8.2"}
ROOMS = [f"chat-d{i}" for i in range(8)]
CHAT_TIMEOUT = 2.0  # s, the cfg's CHAT_TIMEOUT here (12 s by default)
HELP_TEXT = HELP.decode()
BURST = 5  # --sender-burst of the routing test


@dataclass
class Node:
    """One sidecar: where it listens, its RPC port, how to start it, its process."""

    at: SidecarAt
    rpc_port: int
    args: list[str]
    process: SidecarProcess | None = None


@dataclass
class Cluster:
    front: Front
    nodes: dict[str, Node]
    start_sidecar: StartSidecar
    talk: Conversation = field(init=False)

    def start(self, name: str) -> None:
        node = self.nodes[name]
        node.process = self.start_sidecar(node.args)

    def kill(self, name: str) -> None:
        """kill -9, then wait until its ports are free (its workers exit after it)."""
        node = self.nodes[name]
        assert node.process is not None
        node.process.kill()
        deadline = time.monotonic() + 10
        while any(udp_port_is_bound(node.at.ip, port) for port in node.at.ports):
            assert time.monotonic() < deadline, f"{name}'s ports still bound"
            time.sleep(0.05)

    async def wait_state(self, name: str, active: bool, timeout: float = 10.0) -> str:
        """Wait until the dispatcher shows sidecar ``name`` active (``A...``) or
        inactive (``I...``); its flags."""
        uri = self.nodes[name].at.uri
        deadline = time.monotonic() + timeout
        while True:
            flags = (await asyncio.to_thread(dispatcher_states, self.front))[uri]
            if flags.startswith("A" if active else "I"):
                return flags
            assert time.monotonic() < deadline, f"{name} still {flags}, wanted active={active}"
            await asyncio.sleep(0.05)

    def served_by(self, received: Received) -> str:
        """The sidecar whose Via the MESSAGE carries."""
        for host in received.via_hosts():
            for name, node in self.nodes.items():
                if host.split(":")[0] == node.at.ip:
                    return name
        raise AssertionError(f"no sidecar in the Vias {received.via_hosts()}")

    def members(self, name: str, room: str) -> list[str]:
        """imc.list_members of ``room`` on sidecar ``name`` ([] when it has no such room)."""
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "imc.list_members",
                           "params": [self.talk.uri(room)]})
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.nodes[name].rpc_port}/RPC", body.encode()
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                result: dict[str, Any] = json.loads(response.read())["result"]
        except urllib.error.HTTPError:
            return []  # "Room not found"
        return list(result["members"])


def _distinct_udp_port(ip: str, taken: tuple[int, ...]) -> int:
    while True:
        port = free_udp_run(ip, 1)
        if port not in taken:
            return port


@contextlib.asynccontextmanager
async def cluster(
    kind: str, tmp_path: Path, start_sidecar: StartSidecar, users: dict[str, str],
    *sidecar_args: str,
) -> AsyncIterator[Cluster]:
    """Sidecars A and B on a new ``kind`` database (with ``sidecar_args``),
    dispatcher.cfg in front, and ``users`` (name -> transport) registered."""
    with scratch_database(kind, tmp_path) as (db_url, _query):
        front_port = free_port(FRONT_IP)
        nodes = {}
        for name, ip in SIDECAR_IPS.items():
            port = free_port(ip)
            delivery = _distinct_udp_port(ip, (port,))
            rpc_port = free_port("127.0.0.1", avoid=(front_port,))
            nodes[name] = Node(SidecarAt(ip, port, (delivery,)), rpc_port, [
                "--db-url", db_url,
                "--sip-listen", f"udp:{ip}:{port}",
                "--outbound-proxy", f"sip:{FRONT_IP}:{front_port}",
                "--delivery-workers", "1", "--delivery-port", str(delivery),
                "--rpc-http", f"127.0.0.1:{rpc_port}", "--rpc-dgram", "off",
                "--rpc-binrpc", "off", *sidecar_args,
            ])
        front = dispatcher(
            tmp_path / "front", (FRONT_IP, front_port), domain=DOMAIN,
            sidecars=[node.at for node in nodes.values()],
            probe_interval=1, probe_timeout_ms=1000, chat_timeout_ms=int(CHAT_TIMEOUT * 1000),
        )
        group = Cluster(front, nodes, start_sidecar)
        for name in nodes:  # one after the other: the first creates the tables
            await asyncio.to_thread(group.start, name)
        await asyncio.to_thread(front.kamailio.start)
        phones = {
            name: Phone(name, DOMAIN, (FRONT_IP, front_port), transport, ws_port=front.ws_port)
            for name, transport in users.items()
        }
        try:
            for name in nodes:
                await group.wait_state(name, active=True)
            for phone in phones.values():
                await phone.open()
                await phone.register()
            group.talk = Conversation(phones, DOMAIN)
            yield group
        finally:
            for phone in phones.values():
                await phone.close()
            await asyncio.to_thread(front.kamailio.stop)
            for node in nodes.values():
                if node.process is not None:
                    await asyncio.to_thread(node.process.stop, 5.0)


async def _help(group: Cluster, room: str, timeout: float = 5.0) -> str:
    """alice asks the room for #help; the sidecar that answered."""
    _, got = await group.talk.say("alice", room, "#help", reaches=["alice"], text=HELP_TEXT,
                                  timeout=timeout)
    return group.served_by(got["alice"])


async def test_rooms_spread_over_two_sidecars_and_fail_over(
    tmp_path: Path, start_sidecar: StartSidecar
) -> None:
    async with cluster("postgres", tmp_path, start_sidecar, {"alice": "udp", "bob": "tcp"},
                       "--sender-rate", "1", "--sender-burst", str(BURST)) as group:
        talk = group.talk
        home = {}
        for room in ROOMS:
            _, got = await talk.say("alice", room, "#create", reaches=["alice"],
                                    text=ROOM_CREATED)
            home[room] = group.served_by(got["alice"])
        assert set(home.values()) == {"A", "B"}, home
        for room in ROOMS:
            # The hash is over the lower-cased name, as imc matches rooms in any case.
            assert await _help(group, room.upper()) == home[room]
            # Chat copies come from the home's delivery worker, trusted as it.
            await talk.say("bob", room, "#join", reaches=["alice", "bob"], text=joined("bob"))
            _, got = await talk.say("alice", room, f"hi {room}", reaches=["bob"])
            assert group.served_by(got["bob"]) == home[room]
            assert got["bob"].via_hosts()[1].endswith(
                f":{group.nodes[home[room]].at.delivery_ports[0]}"
            ), got["bob"].via_hosts()

        # A 503 with Retry-After refuses one request, not the sidecar: the phone gets it
        # as sent (not as a 500), and it neither fails over to the other sidecar (where
        # the sender would start a fresh burst) nor takes this one out of the set.
        room = ROOMS[0]
        for i in range(BURST):
            await talk.say("bob", room, f"burst {i}", reaches=["alice"])
        reply, got = await talk.say("bob", room, "one too many", reaches=["bob"],
                                    text=SLOW_DOWN.format(seconds=1), status=503)
        assert reply.reason == "Too Many Messages" and reply.header("retry-after"), reply
        assert group.served_by(got["bob"]) == home[room]
        states = await asyncio.to_thread(dispatcher_states, group.front)
        assert all(flags.startswith("A") for flags in states.values()), states

        lost = next(room for room in ROOMS if home[room] == "A")
        await asyncio.to_thread(group.kill, "A")
        # Still in the set: the request waits CHAT_TIMEOUT for A, then failure_route
        # marks A down and sends it to B.
        began = time.monotonic()
        assert await _help(group, lost, timeout=CHAT_TIMEOUT + 5) == "B"
        assert time.monotonic() - began >= CHAT_TIMEOUT * 0.9
        flags = await group.wait_state("A", active=False, timeout=1)
        assert flags == "IP", flags  # inactive, and probed
        # Out of the set: every room goes straight to B.
        for room in ROOMS:
            began = time.monotonic()
            assert await _help(group, room) == "B"
            assert time.monotonic() - began < CHAT_TIMEOUT / 2

        # A restarts; a probe answered brings it back, and its rooms with it.
        await asyncio.to_thread(group.start, "A")
        await group.wait_state("A", active=True, timeout=5)
        for room in ROOMS:
            assert await _help(group, room) == home[room]
        assert not talk.discrepancies(), "\n".join(talk.discrepancies())


@pytest.mark.parametrize("kind", ["postgres", "mariadb"])
async def test_rooms_keep_every_member_across_failover(
    kind: str, tmp_path: Path, start_sidecar: StartSidecar
) -> None:
    users = {"alice": "udp", "bob": "tcp", "carol": "ws", "dave": "udp", "erin": "udp",
             "frank": "udp"}
    async with cluster(kind, tmp_path, start_sidecar, users) as group:
        talk = group.talk
        home: dict[str, str] = {}
        members: dict[str, list[str]] = {}  # active members of each room
        invited: dict[str, set[str]] = {}

        async def chat(who: str, room: str, text: str, served: str) -> None:
            others = [m for m in members[room] if m != who]
            _, got = await talk.say(who, room, text, reaches=others)
            wrong = {user: group.served_by(r) for user, r in got.items()}
            assert set(wrong.values()) <= {served}, (room, text, wrong)

        async def change(who: str, room: str, command: str, text: str, served: str,
                         to_user: str | None = None) -> None:
            _, got = await talk.say(who, to_user or room, command, reaches=members[room],
                                    text=text, sender=talk.uri(room))
            wrong = {user: group.served_by(r) for user, r in got.items()}
            assert set(wrong.values()) <= {served}, (room, command, wrong)

        # Both up: rooms with members and a pending invitation, spread over A and B.
        for room in ROOMS:
            _, got = await talk.say("alice", room, "#create", reaches=["alice"],
                                    text=ROOM_CREATED)
            home[room] = group.served_by(got["alice"])
            members[room] = ["alice"]
            for user in ("bob", "carol"):
                members[room].append(user)
                await change(user, room, "#join", joined(user), home[room])
            await talk.say("alice", room, "#invite dave", reaches=["dave"],
                           text=invited_by("alice"))
            invited[room] = {"dave"}
            await chat("bob", room, f"before {room}", home[room])
        assert set(home.values()) == {"A", "B"}, home
        on_a = [room for room in ROOMS if home[room] == "A"]

        # A is killed: B serves A's rooms with every member and the invitation.
        await asyncio.to_thread(group.kill, "A")
        await group.wait_state("A", active=False)
        for room in ROOMS:
            await chat("alice", room, f"during {room}", "B")
        for room in on_a:
            invited[room].remove("dave")
            members[room].append("dave")
            await change("dave", room, "#accept", joined("dave"), "B")
            members[room].append("erin")
            await change("erin", room, "#join", joined("erin"), "B")
            await change("carol", room, "#leave", left("carol"), "B")
            members[room].remove("carol")
            await chat("bob", room, f"after changes {room}", "B")

        # A is back: its rooms return to it, with the members B left them.
        await asyncio.to_thread(group.start, "A")
        await group.wait_state("A", active=True, timeout=5)
        for room in ROOMS:
            await chat("alice", room, f"back {room}", home[room])
        # Changes on each home, that the other sidecar has not seen.
        for room in ROOMS:
            user = "bob" if home[room] == "A" else "carol"
            await change(user, room, "#leave", left(user), home[room])
            members[room].remove(user)

        # Commands that name their room, sent to another URI, land on that URI's sidecar:
        # it must not act on a stale member list, and the room's home must learn of the
        # change (the change feed: within 1 s).  frank joins every room through the
        # manager URI; dave takes up his invitations to B's rooms through a room of A,
        # and leaves A's rooms through a room of B.
        _, got = await talk.say("frank", "chat-manager", "#help", reaches=["frank"],
                                text=HELP_TEXT)
        manager = group.served_by(got["frank"])
        for room in ROOMS:
            members[room].append("frank")
            await change("frank", room, f"#join {talk.uri(room)}", joined("frank"), manager,
                         to_user="chat-manager")
        for room in ROOMS:
            other = next(r for r in ROOMS if home[r] != home[room])
            if "dave" in invited[room]:
                invited[room].remove("dave")
                members[room].append("dave")
                await change("dave", room, f"#accept {talk.uri(room)}", joined("dave"),
                             home[other], to_user=other)
            else:
                await change("dave", room, f"#leave {talk.uri(room)}", left("dave"),
                             home[other], to_user=other)
                members[room].remove("dave")
        for room in ROOMS:
            wanted = sorted(talk.uri(user) for user in [*members[room], *invited[room]])
            deadline = time.monotonic() + 3
            while sorted(group.members(home[room], room)) != wanted:
                assert time.monotonic() < deadline, (
                    room, home[room], group.members(home[room], room), wanted
                )
                await asyncio.sleep(0.05)
            await chat("alice", room, f"with frank {room}", home[room])

        # Each room's last word; then nothing lost, doubled or sent to a non-member.
        for room in ROOMS:
            await chat("alice", room, f"end {room}", home[room])
        assert not talk.discrepancies(), "\n".join(talk.discrepancies())
