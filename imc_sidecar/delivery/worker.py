"""A delivery worker: a process that sends fan-out copies and runs their transactions.

The sidecar's main process owns every room, the database and every incoming request;
sending a chat text's copies and matching each member's 200 is most of the work of a
busy server and needs no state but the copies themselves, so it can run beside it on
another core.  The sidecar hands a worker a *job* per fan-out (wire.py) with the
recipients that are its own (pool.py): a recipient always has the same worker, so it
gets a room's messages in the order the room accepted them.

A worker sends from its own UDP socket (same host as the sidecar's listener, a port of
its own, `delivery_port` + its index, which its Via names, so the answers come back to
it), retransmits, times out,
and reports per batch how many copies ended and which of them failed, each as soon as
it ends: a member that never answers holds only its own copies.  It exits when
the sidecar closes the channel: the sidecar waits for its copies before doing so at a
clean stop, and a killed sidecar must not leave workers behind.  SIGINT and SIGTERM are
ignored for the same reason: a Ctrl-C or a service manager signals the whole process
group, and the sidecar decides when its workers are done.

Run by the sidecar, not by hand:
`python -m imc_sidecar.delivery.worker --channel-fd N --host HOST --port PORT ...`
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import signal
import socket
import sys
import time
from collections.abc import Sequence

from ..policy.sources import TrustedSources
from ..runtime import loop_factory, tune_gc
from ..sip.driver import EndpointDriver, Events
from ..sip.endpoint import EndpointConfig, RequestReceived
from ..sip.transport import Listen
from .wire import MAX_RECORD, Finished, WireError, decode_job, encode_hello, encode_report

__all__ = ["DeliveryWorker", "main"]

log = logging.getLogger("imc_sidecar.delivery")

_JOBS_PER_WAKEUP = 64
_OUTCOMES_PER_REPORT = 2_000  # about 60 KB of report


class _Tally:
    """How the copies of one fan-out with a token have ended so far."""

    __slots__ = ("delivered", "failed", "left", "reason", "worst")

    def __init__(self, copies: int) -> None:
        self.left = copies
        self.delivered = 0
        self.failed = 0
        self.worst = 0
        self.reason = ""


class DeliveryWorker:
    def __init__(
        self,
        channel: socket.socket,
        host: str,
        port: int,
        outbound_proxy: str | None,
        trusted: TrustedSources | None = None,
    ) -> None:
        self._channel = channel
        self._host = host
        self._port = port
        self._outbound_proxy = outbound_proxy
        self._trusted = trusted
        self._untrusted_reported = (0, 0)
        self._loop = asyncio.get_running_loop()
        self._driver = EndpointDriver(self._record, after_flush=self._report)
        self._buffer = bytearray(MAX_RECORD)
        self._answered = 0  # copies answered 2xx, not reported yet
        self._failures: list[tuple[int, str]] = []  # copies that failed, not reported yet
        self._tokens: dict[int, _Tally] = {}  # fan-outs whose copies are not all ended
        self._finished: list[Finished] = []
        self._report_blocked = False
        self._closed = self._loop.create_future()

    async def run(self) -> None:
        proxy, trusted = self._outbound_proxy, self._trusted
        try:
            await self._driver.start(
                [Listen("udp", self._host, self._port)],
                lambda via: EndpointConfig(
                    via_address=via, outbound_proxy=proxy,
                    trusted=None if trusted is None else trusted.check,
                ),
                announce=False,
            )
        except OSError as exc:
            # One line the operator can act on; the sidecar reports the exit.
            log.error("cannot send from udp:%s:%d: %s", self._host, self._port, exc.strerror)
            raise SystemExit(1) from None
        bound = self._driver.transports.bound[0]
        self._channel.setblocking(False)
        self._channel.send(encode_hello(bound.host, bound.port))
        self._loop.add_reader(self._channel.fileno(), self._on_jobs)
        tune_gc()
        try:
            await self._closed
        finally:
            self._loop.remove_reader(self._channel.fileno())
            await self._driver.close()
            self._channel.close()

    # -- from the sidecar ----------------------------------------------------------------

    def _on_jobs(self) -> None:
        driver = self._driver
        endpoint = driver.endpoint
        assert endpoint is not None
        view = memoryview(self._buffer)
        now = driver.now()
        try:
            for _ in range(_JOBS_PER_WAKEUP):
                try:
                    size = self._channel.recv_into(self._buffer)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:
                    log.error("channel to the sidecar failed: %s", exc)
                    size = 0
                if size == 0:  # the sidecar closed the channel (or is gone)
                    if not self._closed.done():
                        self._closed.set_result(None)
                    return
                try:
                    job = decode_job(view[:size])
                except WireError as exc:
                    log.error("%s; ignored", exc)
                    continue
                if job.token:
                    self._tokens[job.token] = _Tally(len(job.recipients))
                endpoint.send_many(
                    job.recipients, job.from_uri, job.body, job.headers, job.token, now
                )
                driver.send_queued()  # each fan-out leaves at once, as in the sidecar
        finally:
            view.release()
            driver.flush()

    # -- from the network (the driver calls this) ------------------------------------------

    def _record(self, events: Events, now: float) -> None:
        for event in events:
            if isinstance(event, RequestReceived):
                # Requests belong on the sidecar's listening port, not on this one.
                assert self._driver.endpoint is not None
                self._driver.endpoint.reply(event.handle, 403, "Delivery Port", now)
                continue
            if event.status < 300:
                self._answered += 1
            else:
                self._failures.append((event.status, event.reason))
            token = event.context if isinstance(event.context, int) else 0
            tally = self._tokens.get(token) if token else None
            if tally is None:
                continue
            if event.status < 300:
                tally.delivered += 1
            else:
                tally.failed += 1
                if event.status > tally.worst:
                    tally.worst, tally.reason = event.status, event.reason
            tally.left -= 1
            if not tally.left:
                del self._tokens[token]
                self._finished.append((token, tally.delivered, tally.failed, tally.worst,
                                       tally.reason, time.monotonic()))

    # -- to the sidecar (after each flush) ---------------------------------------------------

    def _untrusted_since(self) -> tuple[int, int]:
        """Untrusted requests and responses since the last report."""
        endpoint = self._driver.endpoint
        if endpoint is None:
            return (0, 0)
        requests, responses = self._untrusted_reported
        return (endpoint.untrusted_requests - requests, endpoint.untrusted_responses - responses)

    def _report(self) -> None:
        while not self._report_blocked:
            untrusted = self._untrusted_since()
            if not (self._answered or self._failures or self._finished or any(untrusted)):
                return
            # Lists in slices, so a burst of failures never outgrows one record.
            failures = self._failures[:_OUTCOMES_PER_REPORT]
            finished = self._finished[:_OUTCOMES_PER_REPORT]
            answered = self._answered
            try:
                self._channel.send(encode_report(answered, failures, finished, untrusted))
            except (BlockingIOError, InterruptedError):
                # The sidecar is busy: keep counting, send the sum once it can take it.
                self._report_blocked = True
                self._loop.add_writer(self._channel.fileno(), self._unblocked)
                return
            except OSError:
                return  # the sidecar is gone; the reader sees the end of the channel
            self._answered -= answered
            done = self._untrusted_reported
            self._untrusted_reported = (done[0] + untrusted[0], done[1] + untrusted[1])
            del self._failures[: len(failures)]
            del self._finished[: len(finished)]

    def _unblocked(self) -> None:
        self._loop.remove_writer(self._channel.fileno())
        self._report_blocked = False
        self._report()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="imc-sidecar delivery worker")
    parser.add_argument("--channel-fd", type=int, required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--outbound-proxy", default=None)
    parser.add_argument("--trusted-sources", default="",
                        help="comma-separated networks (the sidecar's trusted_sources)")
    parser.add_argument("--event-loop", default="auto")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s",
    )
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    channel = socket.socket(fileno=args.channel_fd)

    trusted = None
    if args.trusted_sources:
        trusted = TrustedSources(
            ipaddress.ip_network(net) for net in args.trusted_sources.split(",")
        )

    async def run() -> None:
        await DeliveryWorker(
            channel, args.host, args.port, args.outbound_proxy, trusted
        ).run()

    with asyncio.Runner(loop_factory=loop_factory(args.event_loop)) as runner:
        runner.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
