"""In-process fan-out cost without sockets: the Python work per delivery.

Drives a real `Sidecar` (db_mode 0) on the in-memory wire and clock of
`imc_sidecar.sip.memory`: each room MESSAGE goes through driver → endpoint → policy →
engine → fan-out, then every copy is answered 200 by feeding the answer back in.
Prints µs of CPU per delivery; `--profile` runs pyinstrument over it.

    .venv/bin/python bench/profile/inproc.py --rooms 10 --members 10 --messages 3000
"""

from __future__ import annotations

import argparse
import asyncio
import time

from imc_sidecar.app import Sidecar
from imc_sidecar.settings import Listen, Settings
from imc_sidecar.sip.endpoint import Peer
from imc_sidecar.sip.memory import ManualClock, MemoryWire

SENDER = Peer("udp", ("127.0.0.1", 40000))


def request(room: str, user: str, host: str, n: int, body: bytes) -> bytes:
    return (
        f"MESSAGE sip:{room}@chat.example SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK-{n}\r\n"
        f"From: <sip:{user}@{host}>;tag={n}\r\nTo: <sip:{room}@chat.example>\r\n"
        f"Call-ID: {n}-1@127.0.0.1\r\nCSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\n"
        f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def answer(data: bytes) -> bytes:
    """What the profiling answerer sends back: 200 echoing Via, From, To, Call-ID, CSeq."""
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    keep = [h for h in head[1:] if h.split(b":", 1)[0].lower() in
            (b"via", b"from", b"to", b"call-id", b"cseq")]
    return b"\r\n".join([b"SIP/2.0 200 OK", *keep, b"Content-Length: 0", b"", b""])


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rooms", type=int, default=10)
    ap.add_argument("--members", type=int, default=10)
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--repeat", type=int, default=3, help="passes; the fastest is shown")
    args = ap.parse_args()
    settings = Settings(
        db_mode=0, sip_listen=(Listen("udp", "127.0.0.1", 5090),), rpc_http=(),
        rpc_dgram=(), rpc_binrpc=(), history=False,
    )
    sidecar = Sidecar(settings, transports=MemoryWire, clock=ManualClock)
    await sidecar.start()
    driver = sidecar.driver
    wire = driver.transports
    assert isinstance(wire, MemoryWire)
    members = [(f"u{m}", f"127.77.{r}.{m + 1}", f"room{r}")
               for r in range(args.rooms) for m in range(args.members)]

    def deliver(data: bytes) -> None:
        driver.on_data(data, SENDER)
        driver.flush()

    def answer_all() -> int:
        sent, wire.sent = wire.sent, []
        for transmit in sent:
            if transmit.data.startswith(b"MESSAGE"):
                driver.on_data(answer(transmit.data), Peer("udp", transmit.peer.address))
        driver.flush()
        return sum(1 for t in sent if t.data.startswith(b"MESSAGE"))

    for i, (user, host, room) in enumerate(members):
        deliver(request(room, user, host, i, b"#join"))
        answer_all()
    wire.sent.clear()
    order = [members[r * args.members + m] for m in range(args.members)
             for r in range(args.rooms)]
    best: tuple[float, float, int] | None = None
    for rep in range(args.repeat):
        base = 10_000 + rep * args.messages
        requests = [request(room, user, host, base + i, b"hello there")
                    for i, (user, host, room) in
                    ((i, order[i % len(order)]) for i in range(args.messages))]
        # Only the sidecar's own calls are timed; making the answers is not.
        deliveries = 0
        cpu = cpu_requests = 0.0
        profiler = None
        if args.profile:
            from pyinstrument import Profiler
            profiler = Profiler(interval=0.0002)
        clock = time.process_time
        for data in requests:
            if profiler is not None:
                profiler.start()
            t0 = clock()
            driver.on_data(data, SENDER)
            driver.flush()
            spent = clock() - t0
            cpu += spent
            cpu_requests += spent
            if profiler is not None:
                profiler.stop()
            sent, wire.sent = wire.sent, []
            answers = [(answer(t.data), Peer("udp", t.peer.address))
                       for t in sent if t.data.startswith(b"MESSAGE")]
            if profiler is not None:
                profiler.start()
            t0 = clock()
            for reply, peer in answers:
                driver.on_data(reply, peer)
            driver.flush()
            cpu += clock() - t0
            if profiler is not None:
                profiler.stop()
            deliveries += len(answers)

        if best is None or cpu < best[0]:
            best = (cpu, cpu_requests, deliveries)
    assert best is not None
    cpu, cpu_requests, deliveries = best
    if profiler is not None:
        print(profiler.output_text(unicode=True, color=False, show_all=False))
    failed = sidecar.stats.failed_deliveries
    assert sidecar.endpoint is not None
    print(f"{deliveries} deliveries, {cpu * 1e6 / deliveries:.1f} µs CPU each, "
          f"({cpu_requests * 1e6 / deliveries:.1f} on the request and fan-out, the rest "
          f"on the answers), pending {sidecar.endpoint.pending_requests}, failed {failed}")


if __name__ == "__main__":
    asyncio.run(main())
