"""Debian's real kamcmd (BINRPC) against our listener, and our client against it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from imc_sidecar.rpc import binrpc, caller
from imc_sidecar.rpc.binrpc import start_binrpc_server
from imc_sidecar.rpc.binrpc_codec import (
    PacketReader,
    PacketType,
    decode_values,
    encode_request,
)
from imc_sidecar.rpc.registry import (
    Registry,
    RpcContext,
    RpcFault,
    RpcMethod,
    RpcReply,
    RpcStruct,
)

from .harness import Kamailio, find_kamailio, sip_ping
from .harness.kamailio import MODULES_DIR
from .harness.seed import write_dbtext, write_sqlite
from .harness.sipua import free_port
from .sidecar_process import SidecarProcess, sidecar_args, sqlite_url

pytestmark = pytest.mark.e2e

KAMCMD = Path("/usr/sbin/kamcmd")


def reply(*values: object) -> RpcReply:
    result = RpcReply()
    for value in values:
        result.add(value)  # type: ignore[arg-type]
    return result


def fail(code: int, message: str) -> RpcReply:
    raise RpcFault(code, message)


def crash() -> RpcReply:
    raise RuntimeError("a bug")


def members() -> RpcStruct:
    struct = RpcStruct(room="sip:chat-1@example.com", members=["sip:a@x", "sip:b@x"], count=2)
    struct.one_call = True
    return struct


def make_registry() -> Registry:
    registry = Registry()
    methods = {
        "t.ints": lambda: reply(0, 7, -3, 2**31 - 1, -(2**31), 2**40, True),
        "t.strings": lambda: reply("abc", "", "x" * 300, "héllo"),
        "t.doubles": lambda: reply(2.5, -0.001, 2.0, 123.4567, 1e10, 1e300),
        "t.struct": lambda: reply(
            RpcStruct(a=1, b=RpcStruct(c="d", e=[1, [2, 3]]), f=2.5, g=RpcStruct())
        ),
        "t.rooms": lambda: reply(
            RpcStruct(room="sip:chat-1@x", members=2, owner="sip:a@x"),
            RpcStruct(room="sip:chat-2@x", members=0, owner=""),
        ),
        "t.members": lambda: reply(members()),
        "t.array": lambda: reply(["one", 2, 3.5, RpcStruct(k="v"), []]),
        "t.empty": lambda: reply(),
        "t.fault": lambda: fail(500, "Room not found"),
        "t.fault400": lambda: fail(400, "x" * 400),
        "t.crash": crash,
        "t.big": lambda: reply(*("y" * 1000 for _ in range(100))),
    }
    for name, make in methods.items():
        registry.register(RpcMethod(name, lambda _ctx, _params, make=make: make(), ""))
    registry.register(RpcMethod("t.echo", lambda _ctx, params: reply(*params), ""))
    registry.register(
        RpcMethod("system.listMethods", lambda _ctx, _p: reply(*registry.names()), "", True)
    )
    return registry


class NoEngine:
    @property
    def engine(self) -> object:
        raise AssertionError("test methods do not use the engine")


CONTEXT: RpcContext = NoEngine()  # type: ignore[assignment]


@pytest.fixture
async def tcp_server() -> AsyncIterator[str]:
    server = await start_binrpc_server("tcp:127.0.0.1:0", make_registry(), CONTEXT)
    port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    yield f"tcp:127.0.0.1:{port}"
    server.close()
    await server.wait_closed()


async def kamcmd(address: str, *args: str, stdin: str | None = None) -> str:
    assert KAMCMD.exists(), f"{KAMCMD} is missing: install Debian's kamailio package"
    process = await asyncio.create_subprocess_exec(
        str(KAMCMD),
        "-s",
        address,
        "--",  # so that "-2" is an argument, not an option
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(
        process.communicate(stdin.encode() if stdin is not None else b""), 10
    )
    assert process.returncode == 0, err.decode()
    assert err == b"", err.decode()
    return out.decode()


# -- kamcmd renders what we send -------------------------------------------------------


async def test_ints_strings_doubles(tcp_server: str) -> None:
    assert await kamcmd(tcp_server, "t.ints") == (
        "0\n7\n-3\n2147483647\n-2147483648\n1099511627776\n1\n"
    )
    assert await kamcmd(tcp_server, "t.strings") == "abc\n\n" + "x" * 300 + "\nhéllo\n"
    assert await kamcmd(tcp_server, "t.doubles") == (
        "2.500000\n-0.001000\n2\n123.456000\n10000000000\n" + f"{1e300:.0f}\n"
    )


async def test_structs_and_arrays(tcp_server: str) -> None:
    assert await kamcmd(tcp_server, "t.struct") == (
        "{\n\ta: 1\n\tb: {\n\t\tc: d\n\t\te: {\n\t\t\t1\n\t\t\t{\n\t\t\t\t2\n\t\t\t\t3\n"
        "\t\t\t}\n\t\t}\n\t}\n\tf: 2.500000\n\tg: {\n\t}\n}\n"
    )
    assert await kamcmd(tcp_server, "t.array") == (
        "{\n\tone\n\t2\n\t3.500000\n\t{\n\t\tk: v\n\t}\n\t{\n\t}\n}\n"
    )
    assert await kamcmd(tcp_server, "t.rooms") == (
        "{\n\troom: sip:chat-1@x\n\tmembers: 2\n\towner: sip:a@x\n}\n"
        "{\n\troom: sip:chat-2@x\n\tmembers: 0\n\towner: \n}\n"
    )


async def test_one_call_struct_drops_members_after_the_nested_one(tcp_server: str) -> None:
    # Kamailio's imc.list_members over ctl: `count` never arrives.
    assert await kamcmd(tcp_server, "t.members") == (
        "{\n\troom: sip:chat-1@example.com\n\tmembers: {\n\t\tsip:a@x\n\t\tsip:b@x\n\t}\n}\n"
    )


async def test_faults_and_unknown_methods(tcp_server: str) -> None:
    assert await kamcmd(tcp_server, "t.fault") == "error: 500 - Room not found\n"
    assert await kamcmd(tcp_server, "t.fault400") == "error: 400 - " + "x" * 255 + "\n"
    assert await kamcmd(tcp_server, "t.crash") == "error: 500 - internal server error\n"
    assert await kamcmd(tcp_server, "no.such") == "error: 500 - command no.such not found\n"
    assert await kamcmd(tcp_server, "t.empty") == ""


async def test_kamcmd_argument_typing_reaches_the_method(tcp_server: str) -> None:
    out = await kamcmd(tcp_server, "t.echo", "1", "-2", "2.5", "-2.5", "abc", "s:12", "0x10", "1e3")
    assert out == "1\n-2\n2.500000\n-2.500000\nabc\n12\n16\n1000\n"


async def test_big_reply(tcp_server: str) -> None:
    assert await kamcmd(tcp_server, "t.big") == ("y" * 1000 + "\n") * 100


async def test_unix_socket(tmp_path: Path) -> None:
    path = tmp_path / "ctl.sock"
    server = await start_binrpc_server(f"unix:{path}", make_registry(), CONTEXT)
    try:
        assert path.is_socket() and path.stat().st_mode & 0o777 == 0o660
        assert await kamcmd(f"unixs:{path}", "t.rooms") == await kamcmd(str(path), "t.rooms")
        assert await kamcmd(f"unix:{path}", "t.fault") == "error: 500 - Room not found\n"
        with pytest.raises(OSError, match="another process"):
            await start_binrpc_server(f"unix:{path}", make_registry(), CONTEXT)
    finally:
        server.close()
        await server.wait_closed()
    assert not path.exists()
    path.touch()
    with pytest.raises(OSError, match="not a socket"):
        await start_binrpc_server(f"unix:{path}", make_registry(), CONTEXT)


async def test_stale_unix_socket_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "ctl.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens
    server = await start_binrpc_server(f"unix:{path}", make_registry(), CONTEXT)
    try:
        assert await kamcmd(f"unix:{path}", "t.empty") == ""
    finally:
        server.close()
        await server.wait_closed()


async def test_interactive_mode_reuses_one_connection(
    tcp_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # kamcmd without a command reads lines from stdin; it first calls
    # system.listMethods (for completion), then runs each line on the same socket.
    accepted: list[object] = []
    original = binrpc._Connection.connection_made

    def counting(self: binrpc._Connection, transport: asyncio.BaseTransport) -> None:
        accepted.append(transport)
        original(self, transport)

    monkeypatch.setattr(binrpc._Connection, "connection_made", counting)
    out = await kamcmd(tcp_server, stdin="t.ints\nt.fault\nno.such\nt.members\nt.empty\nquit\n")
    assert len(accepted) == 1
    # readline echoes each line it reads from a pipe after the prompt
    replies = [segment.partition("\n")[2] for segment in out.split("kamcmd> ")[1:]]
    assert replies == [
        "0\n7\n-3\n2147483647\n-2147483648\n1099511627776\n1\n",
        "error: 500 - Room not found\n",
        "error: 500 - command no.such not found\n",
        "{\n\troom: sip:chat-1@example.com\n\tmembers: {\n\t\tsip:a@x\n\t\tsip:b@x\n\t}\n}\n",
        "",
        "",
    ]


# -- our own client over BINRPC --------------------------------------------------------


async def test_our_client_over_binrpc(tcp_server: str) -> None:
    result = await asyncio.to_thread(caller.call, tcp_server, "t.echo", [1, -2.5, "s"])
    assert result.values == [1, -2.5, "s"] and result.fault is None
    result = await asyncio.to_thread(caller.call, tcp_server, "t.fault", [])
    assert result.fault == (500, "Room not found")
    result = await asyncio.to_thread(caller.call, tcp_server, "t.members", [])
    assert result.json is not None


async def test_rpc_subcommand_prints_what_kamcmd_prints(tcp_server: str) -> None:
    for method in ("t.struct", "t.rooms", "t.members", "t.doubles", "t.ints", "t.fault"):
        ours = await run_cli("rpc", "-s", tcp_server, method)
        assert ours == await kamcmd(tcp_server, method), method


async def run_cli(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "imc_sidecar",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode in (0, 1), err.decode()
    return out.decode()


# -- bad input never takes the listener down -------------------------------------------


async def exchange(address: str, data: bytes, read_timeout: float = 2.0) -> tuple[bytes, bool]:
    """Send raw bytes; return what came back and whether the server closed the connection."""
    host, port = address[4:].rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(data)
    await writer.drain()
    received = b""
    closed = False
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), read_timeout)
            if not chunk:
                closed = True
                break
            received += chunk
    except TimeoutError:
        pass
    writer.close()
    return received, closed


def faults(data: bytes) -> list[tuple[int, list[object]]]:
    reader = PacketReader(max_body=1 << 24)
    reader.feed(data)
    packets = []
    while (packet := reader.next_packet()) is not None:
        packets.append((packet.cookie, [packet.type, *decode_values(packet.body)]))
    return packets



def fault(cookie: int, code: int, text: str) -> tuple[int, list[object]]:
    return (cookie, [PacketType.FAULT, code, text])


@pytest.mark.parametrize(
    ("data", "expected", "closes"),
    [
        # binary junk: no cookie to answer with, just closed
        (b"\x00\x01\x02GET / HTTP/1.0\r\n\r\n", [], True),
        # a reply sent to the server
        (bytes.fromhex("a1 10 00 05"), [fault(5, 400, "bad request: corrupted packet")], True),
        # an unknown packet type, cookie readable
        (bytes.fromhex("a1 20 00 06"), [fault(6, 400, "bad request: corrupted packet")], True),
        # a huge declared length
        (
            bytes.fromhex("a1 0c 7f ff ff ff 07"),
            [fault(7, 400, "bad request: buffer too small (overflow)")],
            True,
        ),
        # an int where the method name goes
        (
            bytes.fromhex("a1 00 02 08 10 01"),
            [fault(8, 400, "bad request method: record doesn't match type")],
            True,
        ),
        # an empty body
        (
            bytes.fromhex("a1 00 00 0b"),
            [fault(11, 400, "bad request method: end of packet encountered")],
            True,
        ),
        # bad parameters: the packet's bounds are sound, the connection goes on
        (
            bytes.fromhex("a1 00 0c 09 71 74 2e 65 63 68 6f 00 03 10 01 83"),
            [fault(9, 400, "bad request: record doesn't match type")],
            False,
        ),
        (
            bytes.fromhex("a1 00 0a 0a 71 74 2e 65 63 68 6f 00 b1 7f"),
            [fault(10, 400, "bad request: more data needed")],
            False,
        ),
        # an unknown method is looked up before its (junk) parameters, as in ctl
        (
            bytes.fromhex("a1 00 05 0c 21 6d 00 03 10"),
            [fault(12, 500, "command m not found")],
            False,
        ),
    ],
)
async def test_bad_input_gets_a_fault_or_a_close(
    tcp_server: str, data: bytes, expected: Sequence[object], closes: bool
) -> None:
    received, closed = await exchange(tcp_server, data, read_timeout=0.5)
    assert closed is closes
    assert faults(received) == expected
    assert await kamcmd(tcp_server, "t.rooms")  # still serving


async def test_truncated_packet_waits_then_eof_closes(tcp_server: str) -> None:
    request = encode_request(12, "t.ints", [])
    host, port = tcp_server[4:].rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request[:-3])
    await writer.drain()
    with pytest.raises(TimeoutError):  # a partial packet: the server waits for the rest
        await asyncio.wait_for(reader.read(1), 0.3)
    writer.write(request[-3:] + request[:5])  # the rest, then half of another
    await writer.drain()
    reader_packets = PacketReader()
    while (packet := reader_packets.next_packet()) is None:
        reader_packets.feed(await asyncio.wait_for(reader.read(65536), 2))
    assert packet.cookie == 12 and packet.type is PacketType.REPLY
    writer.write_eof()
    assert await asyncio.wait_for(reader.read(), 2) == b""
    writer.close()
    assert await kamcmd(tcp_server, "t.empty") == ""


async def test_many_pipelined_requests_on_one_connection(tcp_server: str) -> None:
    stream = b"".join(encode_request(n, "t.echo", [n, "x" * 100]) for n in range(2000))
    host, port = tcp_server[4:].rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(stream)
    await writer.drain()
    packets = PacketReader(max_body=1 << 20)
    cookies: list[int] = []
    while len(cookies) < 2000:
        packets.feed(await asyncio.wait_for(reader.read(65536), 5))
        while (packet := packets.next_packet()) is not None:
            assert decode_values(packet.body) == [packet.cookie, "x" * 100]
            cookies.append(packet.cookie)
    assert cookies == list(range(2000))
    writer.close()


async def test_idle_connections_are_closed(
    tcp_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(binrpc, "IDLE_TIMEOUT", 0.3)
    host, port = tcp_server[4:].rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    assert await asyncio.wait_for(reader.read(), 3) == b""  # closed by the server
    writer.close()


async def test_connection_limit(tcp_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(binrpc, "MAX_CONNECTIONS", 2)
    host, port = tcp_server[4:].rsplit(":", 1)
    held = [await asyncio.open_connection(host, int(port)) for _ in range(2)]
    for number, (held_reader, held_writer) in enumerate(held):
        # One answered request each: the server has counted both connections.
        held_writer.write(encode_request(number, "t.empty", []))
        packets = PacketReader()
        while packets.next_packet() is None:
            packets.feed(await asyncio.wait_for(held_reader.read(65536), 3))
    reader, writer = await asyncio.open_connection(host, int(port))
    assert await asyncio.wait_for(reader.read(), 3) == b""  # the third is turned away
    writer.close()
    for _reader, held_writer in held:
        held_writer.close()
        await held_writer.wait_closed()
    # The slots are given back once the server has seen both closes.
    async with asyncio.timeout(5):
        while True:
            probe_reader, probe_writer = await asyncio.open_connection(host, int(port))
            probe_writer.write(encode_request(9, "t.empty", []))
            answered = await asyncio.wait_for(probe_reader.read(65536), 3)
            probe_writer.close()
            if answered:
                break
            await asyncio.sleep(0.01)  # turned away: the closes are not seen yet
    assert await kamcmd(tcp_server, "t.empty") == ""


async def test_a_client_that_does_not_read_is_not_buffered_without_bound(
    tcp_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    connections: list[binrpc._Connection] = []
    original = binrpc._Connection.connection_made

    def keep(self: binrpc._Connection, transport: asyncio.BaseTransport) -> None:
        connections.append(self)
        original(self, transport)

    monkeypatch.setattr(binrpc._Connection, "connection_made", keep)
    host, port = tcp_server[4:].rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    count = 300  # 100 KB replies each: 30 MB if the server buffered them all
    writer.write(b"".join(encode_request(n, "t.big", []) for n in range(count)))
    await writer.drain()
    async with asyncio.timeout(5):  # until the server stops reading: its buffer is full
        while not (connections and connections[0]._paused):
            await asyncio.sleep(0.01)
    (connection,) = connections
    transport = connection._transport
    assert transport is not None and connection._paused
    assert transport.get_write_buffer_size() < 2 * 1024 * 1024
    packets = PacketReader(max_body=1 << 20)
    cookies: list[int] = []
    while len(cookies) < count:
        packets.feed(await asyncio.wait_for(reader.read(1 << 20), 5))
        while (packet := packets.next_packet()) is not None:
            cookies.append(packet.cookie)
    assert cookies == list(range(count))
    writer.close()


async def test_concurrent_kamcmds(tcp_server: str) -> None:
    outs = await asyncio.gather(*(kamcmd(tcp_server, "t.rooms") for _ in range(20)))
    assert len(set(outs)) == 1


# -- the sidecar and Kamailio 5.6 side by side -----------------------------------------
#
# Both load the same rooms at start (Kamailio from db_text files, the sidecar from
# SQLite) into the same hash table, so kamcmd must print the same text for both.

ROOMS = [  # (name, domain, flag), in id order
    ("chat-1", "example.com", 0),
    ("chat-2", "example.com", 1),  # private
    ("chat-lobby", "example.com", 0),
    ("chat-x", "other.org", 0),
]
MEMBERS = [  # (username, domain, room, flag); every room needs one (Kamailio's load quirk)
    ("alice", "example.com", "sip:chat-1@example.com", 1),
    ("bob", "example.com", "sip:chat-1@example.com", 0),
    ("carol", "example.com", "sip:chat-1@example.com", 0),
    ("dave", "example.com", "sip:chat-2@example.com", 1),
    ("erin", "other.org", "sip:chat-2@example.com", 4),  # invited
    ("frank", "example.com", "sip:chat-lobby@example.com", 1),
    ("gina", "other.org", "sip:chat-x@other.org", 1),
    ("hal", "other.org", "sip:chat-x@other.org", 2),
]

TOKEN = "s3cret-token-for-the-e2e-tests"

KAMAILIO_CFG = """#!KAMAILIO
debug=2
log_stderror=yes
children=1
auto_aliases=no
dns=no
rev_dns=no
disable_tcp=yes
listen=udp:127.0.0.1:{sip_port}
mpath="{modules}/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "kex.so"
loadmodule "ctl.so"
loadmodule "db_text.so"
loadmodule "imc.so"
modparam("ctl", "binrpc", "tcp:127.0.0.1:{ctl_port}")
modparam("imc", "db_url", "text://{dbtext}")
modparam("imc", "hash_size", 4)
request_route {{
	if (method == "OPTIONS") {{ sl_send_reply("200", "OK"); exit; }}
	sl_send_reply("404", "Not Here");
}}
"""


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


@dataclass
class Pair:
    kamailio: str  # kamcmd -s addresses
    sidecar: str
    sidecar_http: str
    sidecar_dgram: str
    sidecar_unix: str
    sidecar_sip: tuple[str, int]
    sidecar_process: SidecarProcess


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    find_kamailio()  # a missing Kamailio fails here, it does not skip
    assert KAMCMD.exists(), f"{KAMCMD} is missing: install Debian's kamailio package"
    base = tmp_path_factory.mktemp("binrpc-pair")
    write_dbtext(base / "dbtext", ROOMS, MEMBERS)
    sip_port, ctl_port = free_port(), free_port()
    kamailio = Kamailio(
        KAMAILIO_CFG.format(
            sip_port=sip_port, ctl_port=ctl_port, modules=MODULES_DIR, dbtext=base / "dbtext"
        ),
        base / "kamailio",
        ("127.0.0.1", sip_port),
        name="binrpc-reference",
    )
    url = sqlite_url(base)
    write_sqlite(url, base / "imc.sqlite", ROOMS, MEMBERS)
    side_sip, binrpc_port, http_port, dgram_port = (free_port() for _ in range(4))
    unix_path = base / "ctl.sock"
    sidecar = SidecarProcess(
        sidecar_args(
            url,
            side_sip,
            f"--rpc-binrpc=tcp:127.0.0.1:{binrpc_port},unix:{unix_path}",
            f"--rpc-http=127.0.0.1:{http_port}",
            f"--rpc-dgram=udp:127.0.0.1:{dgram_port}",
        ),
        env={"IMC_RPC_TOKEN": TOKEN},
    )
    kamailio.start()
    try:
        sidecar.start()
        try:
            wait_for_port(binrpc_port)
            yield Pair(
                kamailio=f"tcp:127.0.0.1:{ctl_port}",
                sidecar=f"tcp:127.0.0.1:{binrpc_port}",
                sidecar_http=f"http://127.0.0.1:{http_port}/RPC",
                sidecar_dgram=f"udp:127.0.0.1:{dgram_port}",
                sidecar_unix=f"unix:{unix_path}",
                sidecar_sip=("127.0.0.1", side_sip),
                sidecar_process=sidecar,
            )
        finally:
            sidecar.kill()
    finally:
        log = kamailio.stop()
    assert "segfault" not in log


def kamcmd_sync(address: str, *args: str, stdin: str = "") -> str:
    done = subprocess.run(
        [str(KAMCMD), "-s", address, "--", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return done.stdout


SAME_TEXT = [
    ("imc.list_rooms",),
    ("imc.list_members", "sip:chat-1@example.com"),
    ("imc.list_members", "sip:chat-2@example.com"),
    ("imc.list_members", "sip:chat-x@other.org"),
    ("imc.list_members", "sip:nope@x"),
    ("imc.list_members",),  # No room name
    ("imc.list_members", "12"),  # an INT where a string goes: No room name
    ("imc.list_members", "s:"),  # Empty room name
    ("imc.list_members", "bad"),  # Invalid room name
    ("stats.get_statistics",),  # 400 Please provide which stats to retrieve
    ("no.such.method",),
]


@pytest.mark.parametrize("command", SAME_TEXT, ids=" ".join)
def test_same_kamcmd_text_as_kamailio(pair: Pair, command: tuple[str, ...]) -> None:
    expected = kamcmd_sync(pair.kamailio, *command)
    assert expected  # Kamailio answered something
    assert kamcmd_sync(pair.sidecar, *command) == expected


def test_list_members_has_no_count_over_binrpc(pair: Pair) -> None:
    out = kamcmd_sync(pair.sidecar, "imc.list_members", "sip:chat-1@example.com")
    assert out == (
        "{\n\troom: sip:chat-1@example.com\n\tmembers: {\n"
        "\t\tsip:alice@example.com\n\t\tsip:carol@example.com\n\t\tsip:bob@example.com\n"
        "\t}\n}\n"
    )


def test_statistics_differ_only_in_active_rooms(pair: Pair) -> None:
    # Kamailio never updates imc:active_rooms (always 0); the sidecar counts rooms, and
    # adds counters of its own to the group after Kamailio's one.
    assert kamcmd_sync(pair.kamailio, "stats.get_statistics", "imc:") == "imc:active_rooms = 0\n"
    ours = kamcmd_sync(pair.sidecar, "stats.get_statistics", "imc:").splitlines()
    assert ours[0] == f"imc:active_rooms = {len(ROOMS)}"
    assert all(line.startswith("imc:") and " = " in line for line in ours)


def test_interactive_session_matches_kamailio(pair: Pair) -> None:
    lines = "".join(" ".join(command) + "\n" for command in SAME_TEXT)
    expected = kamcmd_sync(pair.kamailio, stdin=lines + "quit\n")
    assert expected.count("kamcmd> ") == len(SAME_TEXT) + 1
    assert kamcmd_sync(pair.sidecar, stdin=lines + "quit\n") == expected


def test_our_client_prints_what_kamcmd_prints(pair: Pair) -> None:
    for command in SAME_TEXT:
        for address in (pair.kamailio, pair.sidecar):
            ours = run_cli_sync("rpc", "-s", address, *command)
            assert ours == kamcmd_sync(address, *command), (address, command)


@pytest.mark.parametrize("transport", ["http", "udp"])
def test_our_client_over_json_rpc_differs_only_where_json_rpc_does(
    pair: Pair, transport: str
) -> None:
    # JSON-RPC carries list_members' `count` (ctl drops it) and words an unknown method
    # "Method Not Found" (jsonrpcs); everything else prints the same.
    address = pair.sidecar_http if transport == "http" else pair.sidecar_dgram
    for command in SAME_TEXT:
        ours = run_cli_sync("rpc", "-s", address, "--token", TOKEN, *command)
        expected = kamcmd_sync(pair.kamailio, *command)
        if command[0] == "imc.list_members" and not expected.startswith("error"):
            members = sum(1 for row in MEMBERS if row[2] == command[1])
            expected = expected[: -len("}\n")] + f"\tcount: {members}\n}}\n"
        if command[0] == "no.such.method":
            expected = "error: 500 - Method Not Found\n"
        assert ours == expected, command


def test_http_without_the_token_is_refused(pair: Pair) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "imc_sidecar", "rpc", "-s", pair.sidecar_http, "imc.list_rooms"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "IMC_RPC_TOKEN"},
    )
    assert done.returncode == 3 and done.stdout == ""
    assert "HTTP 401" in done.stderr


def test_unix_socket_of_the_sidecar(pair: Pair) -> None:
    for command in SAME_TEXT:
        assert kamcmd_sync(pair.sidecar_unix, *command) == kamcmd_sync(pair.sidecar, *command)


def run_cli_sync(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "imc_sidecar", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr
    return done.stdout


JUNK = [
    b"\x00" * 64,
    b"GET / HTTP/1.0\r\n\r\n",
    bytes.fromhex("a1 0c 7f ff ff ff 07"),  # 2 GiB declared
    bytes.fromhex("a1 00 02 08 10 01"),  # an int where the method name goes
    bytes.fromhex("a1 00 07 09 21 6d 00 03 10 01 83"),  # a struct parameter
    encode_request(5, "imc.list_rooms", [])[:-2],  # truncated, then EOF
    bytes(range(256)) * 4,
]


def test_bad_input_leaves_the_sidecar_serving(pair: Pair) -> None:
    host, port = pair.sidecar[4:].rsplit(":", 1)
    for junk in JUNK:
        with socket.create_connection((host, int(port)), 5) as sock:
            sock.sendall(junk)
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(5)
            received = b""
            while chunk := sock.recv(65536):  # the server closes every one of these
                received += chunk
        for _cookie, (kind, *_rest) in faults(received):
            assert kind is PacketType.FAULT
    assert pair.sidecar_process.process is not None
    assert pair.sidecar_process.process.poll() is None
    assert kamcmd_sync(pair.sidecar, "imc.list_rooms") == kamcmd_sync(
        pair.kamailio, "imc.list_rooms"
    )
    assert sip_ping(pair.sidecar_sip, timeout=2) == "SIP/2.0 200 OK"
