"""SIP over TCP held to its limits, in-process over real loopback sockets, on both event
loops the sidecar runs on: connections refused past the total and per-source limits,
idle and slowloris connections closed on time while keep-alives and messages keep theirs
open, streams over the size limits closed, and a peer that does not read closed at the
write bound with an error for it, while everyone else keeps being served."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

from imc_sidecar.policy.connections import ConnectionCounts, ConnectionLimits
from imc_sidecar.runtime import loop_factory
from imc_sidecar.sip.endpoint import Peer, Transmit
from imc_sidecar.sip.message import MAX_BODY_BYTES, MAX_HEAD_BYTES
from imc_sidecar.sip.transport import Listen, SipTransports

Run = Callable[[Coroutine[Any, Any, None]], None]
Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Iterator[Run]:
    """Run a test's coroutine on a fresh loop of the kind asked for."""

    def run(main: Coroutine[Any, Any, None]) -> None:
        with asyncio.Runner(loop_factory=loop_factory(request.param)) as runner:
            runner.run(main)

    yield run


def options(n: int = 0, extra: str = "") -> bytes:
    return (
        f"OPTIONS sip:chat@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bK-{n}\r\n"
        f"From: <sip:a@127.0.0.1>;tag={n}\r\nTo: <sip:chat@127.0.0.1>\r\n"
        f"Call-ID: c-{n}\r\nCSeq: 1 OPTIONS\r\n{extra}Content-Length: 0\r\n\r\n"
    ).encode()


class Sidecar:
    """A SipTransports on an ephemeral loopback TCP port; what reaches its sink is kept,
    and `reply` (when set) is sent back to the peer of each message."""

    def __init__(self, limits: ConnectionLimits, reply: bytes = b"") -> None:
        self.received: list[tuple[bytes, Peer]] = []
        self.errors: list[Peer] = []
        self.counts = ConnectionCounts()
        self.reply = reply
        self.most_unsent = 0
        self.transports = SipTransports(
            self._sink, self.errors.append, tcp_limits=limits, tcp_counts=self.counts
        )
        self.address = ("", 0)

    async def __aenter__(self) -> Sidecar:
        await self.transports.start([Listen("tcp", "127.0.0.1", 0)], announce=False)
        bound = self.transports.bound[0]
        self.address = (bound.host, bound.port)
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.transports.close()

    def _sink(self, data: bytes, peer: Peer) -> None:
        self.received.append((data, peer))
        if self.reply:
            self.transports.send(Transmit(self.reply, peer))
            conn = self.transports.connections.get(peer.address)
            if conn is not None and conn.transport and not conn.transport.is_closing():
                self.most_unsent = max(self.most_unsent, conn.transport.get_write_buffer_size())

    async def connect(self, source: str = "127.0.0.1") -> Stream:
        return await asyncio.open_connection(*self.address, local_addr=(source, 0))


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.002)


async def closed_by_server(reader: asyncio.StreamReader, timeout: float = 5.0) -> bool:
    """True once the server closed (FIN or RST) the connection; anything read is skipped."""
    async with asyncio.timeout(timeout):
        try:
            while await reader.read(65536):
                pass
        except ConnectionResetError:
            pass
    return True


async def served(sidecar: Sidecar, writer: asyncio.StreamWriter, n: int) -> None:
    """`writer`'s connection still carries a message to the sink."""
    before = len(sidecar.received)
    writer.write(options(n))
    await until(lambda: len(sidecar.received) > before)
    assert sidecar.received[-1][0] == options(n)


def test_total_and_per_source_limits_refuse_only_the_extra_connection(run: Run) -> None:
    async def main() -> None:
        limits = ConnectionLimits(max_total=4, max_per_source=2)
        async with Sidecar(limits) as sidecar:
            tcp = sidecar.transports.tcp
            held = [await sidecar.connect("127.0.0.2") for _ in range(2)]
            await until(lambda: tcp.inbound == 2)
            reader, _ = await sidecar.connect("127.0.0.2")  # a third from the same source
            assert await closed_by_server(reader)
            held += [await sidecar.connect("127.0.0.3"), await sidecar.connect("127.0.0.4")]
            await until(lambda: tcp.inbound == 4)
            reader, _ = await sidecar.connect("127.0.0.5")  # a fifth in all
            assert await closed_by_server(reader)
            assert sidecar.counts.refused == 2 and tcp.inbound == 4
            for n, (_, writer) in enumerate(held):
                await served(sidecar, writer, n)
            assert len({peer.address for _, peer in sidecar.received}) == 4
            # A slot given back is a slot for the next peer.
            held[0][1].close()
            await until(lambda: tcp.inbound == 3)
            _, writer = await sidecar.connect("127.0.0.5")
            await served(sidecar, writer, 9)
            assert sidecar.counts.refused == 2 and sidecar.counts.open == 4

    run(main())


def test_idle_and_slowloris_closed_keepalive_and_messages_kept(run: Run) -> None:
    timeout = 0.4

    async def silent(sidecar: Sidecar) -> float:
        began = time.monotonic()
        reader, _ = await sidecar.connect()
        await closed_by_server(reader)
        return time.monotonic() - began

    async def slowloris(sidecar: Sidecar) -> float:
        """A head that never ends, one byte every 50 ms: bytes, but no progress."""
        began = time.monotonic()
        reader, writer = await sidecar.connect()
        closed = asyncio.ensure_future(closed_by_server(reader))
        with pytest.raises(ConnectionError):
            for byte in options(1)[:-4] * 100:
                if closed.done():
                    raise ConnectionResetError
                writer.write(bytes([byte]))
                await asyncio.sleep(0.05)
        await closed
        return time.monotonic() - began

    async def talker(sidecar: Sidecar, keepalive: bool) -> float:
        """Pings (or whole messages) every 100 ms for three timeouts, then silence."""
        reader, writer = await sidecar.connect()
        for n in range(int(3 * timeout / 0.1)):
            await asyncio.sleep(0.1)
            if keepalive:
                writer.write(b"\r\n\r\n")
                assert await asyncio.wait_for(reader.readexactly(2), 1) == b"\r\n"
            else:
                await served(sidecar, writer, n)
        began = time.monotonic()  # the last progress
        await closed_by_server(reader)
        return time.monotonic() - began

    async def main() -> None:
        async with Sidecar(ConnectionLimits(idle_timeout=timeout)) as sidecar:
            times = await asyncio.gather(
                silent(sidecar), slowloris(sidecar), talker(sidecar, True),
                talker(sidecar, False),
            )
            for took in times:
                assert timeout * 0.9 <= took < timeout + 1.0, times
            assert sidecar.counts.idle_closed == 4
            await until(lambda: sidecar.counts.open == 0)

    run(main())


@pytest.mark.parametrize(
    ("stream", "why"),
    [
        (b"OPTIONS sip:x SIP/2.0\r\nX: " + b"a" * MAX_HEAD_BYTES, "head too large"),
        (options(extra=f"Content-Length: {MAX_BODY_BYTES + 1}\r\n").replace(
            b"Content-Length: 0\r\n", b""), "body too large"),
        (options().replace(b"Content-Length: 0\r\n", b""), "no Content-Length"),
        (b"\r\n\r\n\rX", "malformed keep-alive"),
    ],
)
def test_stream_over_the_framing_limits_is_closed(run: Run, stream: bytes, why: str) -> None:
    async def main() -> None:
        async with Sidecar(ConnectionLimits(idle_timeout=60)) as sidecar:
            _, neighbour = await sidecar.connect()
            reader, writer = await sidecar.connect()
            writer.write(stream)
            assert await closed_by_server(reader), why
            assert sidecar.counts.framing_closed == 1
            await served(sidecar, neighbour, 1)
            assert [data for data, _ in sidecar.received] == [options(1)]

    run(main())


def test_peer_that_does_not_read_its_replies_is_closed_at_the_bound(run: Run) -> None:
    bound = 256 * 1024
    reply = b"SIP/2.0 200 OK\r\nX: " + b"r" * 60_000 + b"\r\nContent-Length: 0\r\n\r\n"

    async def main() -> None:
        limits = ConnectionLimits(max_write_buffer=bound)
        async with Sidecar(limits, reply=reply) as sidecar:
            _, reader_writer = await sidecar.connect("127.0.0.2")  # reads: nothing to hold
            deaf = socket.socket()
            deaf.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            deaf.bind(("127.0.0.3", 0))
            deaf.setblocking(False)
            await asyncio.get_running_loop().sock_connect(deaf, sidecar.address)
            peer = Peer("tcp", deaf.getsockname())
            # 1,000 requests ask for 60 MB of replies; the deaf peer reads none of them.
            await asyncio.get_running_loop().sock_sendall(
                deaf, b"".join(options(n) for n in range(1000))
            )
            await until(lambda: sidecar.errors == [peer])
            assert sidecar.counts.overflow_closed == 1
            # Held up to the bound (not closed any earlier), never beyond it.
            assert bound - len(reply) < sidecar.most_unsent <= bound
            replied = sum(1 for _, p in sidecar.received if p == peer)
            assert replied < 1000  # closed long before all replies were held
            await until(lambda: peer.address not in sidecar.transports.connections)
            deaf.close()
            await served(sidecar, reader_writer, 5000)  # the others are still served

    run(main())


def test_outbound_peer_that_does_not_read_fails_at_the_bound(run: Run) -> None:
    """A connection we opened (an outbound proxy) that stops reading: closed at the
    bound, the error reported for it; data piling up while it is being opened is held
    to the same bound."""
    bound = 128 * 1024
    copy = b"MESSAGE sip:b@x SIP/2.0\r\nX: " + b"m" * 30_000 + b"\r\nContent-Length: 0\r\n\r\n"

    async def main() -> None:
        with socket.socket() as proxy:
            proxy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            proxy.bind(("127.0.0.1", 0))
            proxy.listen()  # accepts (in the kernel), never reads
            peer = Peer("tcp", proxy.getsockname())
            async with Sidecar(ConnectionLimits(max_write_buffer=bound)) as sidecar:
                transports = sidecar.transports
                transports.send(Transmit(copy, peer))
                await until(lambda: peer.address in transports.connections)
                sent = 1
                while not sidecar.counts.overflow_closed:
                    transports.send(Transmit(copy, peer))
                    sent += 1
                    assert sent < 10_000
                await until(lambda: bool(sidecar.errors))
                assert sidecar.errors == [peer]
                assert sent * len(copy) > bound  # the kernel took its share first
                await until(lambda: sidecar.counts.open == 0)
                # Now a burst before the new connection is even open: 5 copies fit.
                for _ in range(8):
                    transports.send(Transmit(copy, peer))
                assert sidecar.counts.overflow_closed == 2
                await until(lambda: len(sidecar.errors) == 1 + 4)
                assert set(map(repr, sidecar.errors)) == {repr(peer)}

    run(main())
