"""kamailio-snippets/one-sidecar.cfg on Debian's Kamailio 5.6 with a real sidecar.

Users register over UDP, TCP and SIP over WebSocket (RFC 7118) and chat in rooms through
Kamailio: phone -> Kamailio -> sidecar -> Kamailio -> every member's own connection
(Kamailio issue #148 was WebSocket users getting nothing from imc).  The sidecar runs a
delivery worker, so the chat copies come from a delivery port, which the cfg must
trust as the sidecar's (sidecars.address) and nothing else: a phone writing as a room
is refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from .conftest import StartSidecar
from .harness.chatlog import ROOM_CREATED, Conversation, joined
from .harness.phones import Phone
from .harness.sipua import free_port, free_udp_run
from .harness.snippets import SidecarAt, one_sidecar
from .sidecar_process import sqlite_url

pytestmark = pytest.mark.e2e

DOMAIN = "snippets.test"
IP = "127.0.0.1"


@pytest.fixture
async def chat(tmp_path: Path, start_sidecar: StartSidecar) -> AsyncIterator[
    tuple[Conversation, SidecarAt]
]:
    kamailio_port = free_port(IP)
    sidecar = SidecarAt(IP, free_port(IP, avoid=(kamailio_port,)), (free_udp_run(IP, 1),))
    front = one_sidecar(tmp_path / "front", (IP, kamailio_port), domain=DOMAIN,
                        sidecar=sidecar)
    await asyncio.to_thread(front.kamailio.start)
    try:
        await asyncio.to_thread(start_sidecar, [
            "--db-url", sqlite_url(tmp_path),
            "--sip-listen", f"udp:{IP}:{sidecar.port}",
            "--outbound-proxy", f"sip:{IP}:{kamailio_port}",
            "--delivery-workers", "1", "--delivery-port", str(sidecar.delivery_ports[0]),
            "--rpc-http", "off", "--rpc-dgram", "off", "--rpc-binrpc", "off",
        ])
        phones = {
            name: Phone(name, DOMAIN, (IP, kamailio_port), transport, ws_port=front.ws_port)
            for name, transport in (("alice", "udp"), ("bob", "tcp"), ("carol", "ws"))
        }
        for phone in phones.values():
            await phone.open()
            await phone.register()
        try:
            yield Conversation(phones, DOMAIN), sidecar
        finally:
            for phone in phones.values():
                await phone.close()
    finally:
        log = await asyncio.to_thread(front.kamailio.stop)
    assert not [line for line in log.splitlines() if " ERROR:" in line], log[-3000:]


def _sidecar_hop(received_vias: list[str], sidecar: SidecarAt) -> int:
    """The port of the sidecar's Via under Kamailio's (0: none)."""
    for host in received_vias:
        ip, _, port = host.partition(":")
        if ip == sidecar.ip and int(port or 5060) in sidecar.ports:
            return int(port)
    return 0


async def test_users_on_udp_tcp_and_websocket_chat_through_one_sidecar(
    chat: tuple[Conversation, SidecarAt],
) -> None:
    talk, sidecar = chat
    room = "chat-lobby"
    uri = talk.uri(room)
    everyone = ("alice", "bob", "carol")

    await talk.say("alice", room, "#create", reaches=["alice"], text=ROOM_CREATED)
    # Any case reaches the room, as with imc: the pattern matches the lower-cased user.
    await talk.say("bob", "Chat-Lobby", "#join", reaches=["alice", "bob"], text=joined("bob"),
                   sender=uri)
    await talk.say("carol", room, "#join", reaches=everyone, text=joined("carol"))

    # Every member gets every text on its own transport, the sender none.
    for who, transport in (("alice", "udp"), ("bob", "tcp"), ("carol", "ws")):
        others = [name for name in everyone if name != who]
        _, copies = await talk.say(who, room, f"hello over {transport}", reaches=others)
        for received in copies.values():
            # Kamailio on top, then the sidecar: the copies leave from its delivery
            # worker's port, which the cfg took as the sidecar's.
            assert _sidecar_hop(received.via_hosts(), sidecar) in sidecar.delivery_ports

    # A room named in the text goes through the manager URI.
    await talk.say("carol", "chat-manager", "#create chat-side", reaches=["carol"],
                   text=ROOM_CREATED, sender=talk.uri("chat-side"))
    await talk.say("alice", "chat-manager", "#join sip:chat-side@" + DOMAIN,
                   reaches=["carol", "alice"], text=joined("alice"),
                   sender=talk.uri("chat-side"))

    # Only the sidecar speaks for a room: a phone that writes as one is refused, and a
    # plain MESSAGE between users still goes through (bob on TCP to carol on WebSocket).
    spoofed = await talk.phones["bob"].request(
        "MESSAGE", talk.uri("carol"), "*** Room has been destroyed", from_uri=uri
    )
    assert spoofed.status == 403, spoofed.start_line
    await talk.say("bob", "carol", "direct", reaches=["carol"], text="direct",
                   sender=talk.uri("bob"))

    # Nothing twice, nothing missing, nobody outside the room: a last text in each
    # room, then the full ledger.
    await talk.say("alice", room, "last", reaches=["bob", "carol"])
    await talk.say("alice", "chat-side", "last side", reaches=["carol"])
    assert not talk.discrepancies(), "\n".join(talk.discrepancies())
