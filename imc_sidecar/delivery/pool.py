"""The sidecar's side of its delivery workers (worker.py): start, feed, account, stop.

Every copy given to the pool is counted as in flight until its worker reports it ended,
so the sidecar's overload measure and its clean-stop wait see the workers' copies as
their own.  A recipient's copies always go through the same worker (by a hash of the
recipient URI), so each member gets a room's messages in the order the room accepted
them, and one large room still spreads over every worker.  A worker that dies has every
copy it held counted as failed, and its recipients go to the workers left (with none
left the sidecar sends the copies itself) until it is restarted in its place, on its
port, half a second later.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .wire import (
    MAX_RECORD,
    WireError,
    decode_hello,
    decode_report,
    encode_job,
)

__all__ = ["DeliveryPool"]

log = logging.getLogger("imc_sidecar.delivery")

# Called for each copy handed over that failed, as it ends: (status, reason).
FailureSink = Callable[[int, str], None]
# Called once per share of a fan-out handed over with a context, when all its copies have
# ended: (context, delivered, failed, worst status or 0, its reason, monotonic time of
# the last end).  Its failed copies were each reported to the FailureSink already.
ResultSink = Callable[[object, int, int, int, str, float], None]

_START_TIMEOUT = 20.0  # seconds for a worker to import, bind and say hello
_EXIT_TIMEOUT = 5.0
_CHANNEL_BUFFER = 4 * 1024 * 1024  # the kernel caps it at net.core.wmem_max
_WORKER_GONE = (503, "Delivery worker exited")
_RESTART_FIRST = 0.5  # seconds before a dead worker is restarted; doubled per failure
_RESTART_MAX = 30.0


@dataclass(eq=False)
class _Worker:
    index: int
    channel: socket.socket
    process: asyncio.subprocess.Process
    address: tuple[str, int] = ("", 0)
    in_flight: int = 0  # copies handed over and not reported ended
    # token -> (context, copies), until the worker reports the token finished
    contexts: dict[int, tuple[object, int]] = field(default_factory=dict)
    backlog: deque[tuple[bytes, int, int]] = field(default_factory=deque)  # record, copies, token
    alive: bool = True


class DeliveryPool:
    def __init__(
        self,
        count: int,
        on_failure: FailureSink,
        on_result: ResultSink,
        on_restart: Callable[[], None] = lambda: None,
    ) -> None:
        if count < 1:
            raise ValueError("a delivery pool needs at least one worker")
        self._count = count
        self._on_failure = on_failure
        self._on_result = on_result
        self._on_restart = on_restart
        self._workers: list[_Worker] = []
        self._live: list[_Worker] = []
        self._next_token = 1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._buffer = bytearray(MAX_RECORD)
        self._spawn_args: tuple[str, int, str | None, str, str, str] | None = None
        # From the workers' reports: requests refused and responses ignored because
        # their source is not in trusted_sources.
        self.untrusted_requests = 0
        self.untrusted_responses = 0
        self._restarts: dict[int, asyncio.Task[None]] = {}
        self._closing = False

    @property
    def in_flight(self) -> int:
        return sum(worker.in_flight for worker in self._workers)

    @property
    def running(self) -> int:
        """Workers taking copies now."""
        return len(self._live)

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Where the live workers send from (their Via)."""
        return [worker.address for worker in self._live]

    async def start(
        self,
        host: str,
        first_port: int,
        outbound_proxy: str | None,
        event_loop: str,
        log_level: str,
        trusted_sources: str = "",
    ) -> None:
        """Start every worker and wait until each is ready to send.

        Worker i binds `first_port + i` (`first_port` 0: an ephemeral port each).
        """
        self._loop = asyncio.get_running_loop()
        self._spawn_args = (
            host, first_port, outbound_proxy, event_loop, log_level, trusted_sources
        )
        try:
            for index in range(self._count):
                self._workers.append(await self._spawn(index))
            await asyncio.wait_for(
                asyncio.gather(*(self._hello(worker) for worker in self._workers)),
                _START_TIMEOUT,
            )
        except BaseException:
            await self.close()
            raise
        for worker in self._workers:
            self._loop.add_reader(worker.channel.fileno(), self._on_reports, worker)
        self._live = list(self._workers)

    async def _spawn(self, index: int) -> _Worker:
        assert self._spawn_args is not None
        host, first_port, outbound_proxy, event_loop, log_level, trusted = self._spawn_args
        port = first_port + index if first_port else 0
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        for sock in (ours, theirs):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _CHANNEL_BUFFER)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _CHANNEL_BUFFER)
        ours.setblocking(False)
        argv = [sys.executable, "-m", "imc_sidecar.delivery.worker",
                "--channel-fd", str(theirs.fileno()), "--host", host, "--port", str(port),
                "--event-loop", event_loop, "--log-level", log_level]
        if outbound_proxy:
            argv += ["--outbound-proxy", outbound_proxy]
        if trusted:
            argv += ["--trusted-sources", trusted]
        try:
            process = await asyncio.create_subprocess_exec(
                *argv, pass_fds=(theirs.fileno(),), stdin=asyncio.subprocess.DEVNULL
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return _Worker(index, ours, process)

    async def _hello(self, worker: _Worker) -> None:
        assert self._loop is not None
        record = await self._loop.sock_recv(worker.channel, 1024)
        if not record:
            code = await worker.process.wait()
            raise RuntimeError(f"delivery worker {worker.index} exited at start (code {code})")
        try:
            hello = decode_hello(record)
        except WireError as exc:
            raise RuntimeError(f"delivery worker {worker.index}: {exc}") from None
        worker.address = (hello.host, hello.port)
        log.info(
            "delivery worker %d (pid %d) sends from udp:%s:%d",
            worker.index, worker.process.pid, hello.host, hello.port,
        )

    # -- handing over fan-outs -------------------------------------------------------------

    def submit(
        self,
        recipients: Sequence[str],
        from_uri: str,
        body: bytes,
        headers: bytes,
        context: object,
    ) -> list[str]:
        """Hand a fan-out to the workers, each copy to its recipient's worker.

        Returns the recipients not handed over (no worker left, or a record too big for
        the channel): the caller sends those itself.
        """
        live = self._live
        if not live or not recipients:
            return list(recipients)
        count = len(live)
        if count == 1:
            return self._hand(live[0], recipients, from_uri, body, headers, context)
        shares: dict[int, list[str]] = {}
        for uri in recipients:
            shares.setdefault(hash(uri) % count, []).append(uri)
        left: list[str] = []
        for index, share in shares.items():
            # Each share carries the context under a token of its own.
            left += self._hand(live[index], share, from_uri, body, headers, context)
        return left

    def _hand(
        self,
        worker: _Worker,
        recipients: Sequence[str],
        from_uri: str,
        body: bytes,
        headers: bytes,
        context: object,
    ) -> list[str]:
        token = 0
        if context is not None:
            token = self._next_token
            self._next_token += 1
        record = encode_job(token, from_uri, body, headers, tuple(recipients))
        if not worker.backlog:
            try:
                worker.channel.send(record)
            except (BlockingIOError, InterruptedError):
                self._queue(worker, record, len(recipients), token)
            except OSError:
                # Too big for the channel (EMSGSIZE), or the worker is gone (its reader
                # accounts for that): either way these copies were not handed over.
                return list(recipients)
        else:
            self._queue(worker, record, len(recipients), token)
        worker.in_flight += len(recipients)
        if token:
            worker.contexts[token] = (context, len(recipients))
        return []

    def _queue(self, worker: _Worker, record: bytes, copies: int, token: int) -> None:
        if not worker.backlog:
            assert self._loop is not None
            self._loop.add_writer(worker.channel.fileno(), self._drain, worker)
        worker.backlog.append((record, copies, token))

    def _drain(self, worker: _Worker) -> None:
        backlog = worker.backlog
        while backlog:
            record, copies, token = backlog[0]
            try:
                worker.channel.send(record)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno != errno.EMSGSIZE:
                    break  # the worker is gone: the reader will see the end of the channel
                backlog.popleft()
                self._fail(worker, copies, token, (503, "Fan-out too large for a worker"))
                continue
            backlog.popleft()
        assert self._loop is not None
        self._loop.remove_writer(worker.channel.fileno())

    # -- hearing back ----------------------------------------------------------------------

    def _on_reports(self, worker: _Worker) -> None:
        while True:
            try:
                size = worker.channel.recv_into(self._buffer)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                size = 0
            if size == 0:
                self._lost(worker)
                return
            try:
                report = decode_report(bytes(self._buffer[:size]))
            except WireError as exc:
                log.error("delivery worker %d: %s", worker.index, exc)
                continue
            worker.in_flight -= report.copies
            self.untrusted_requests += report.untrusted[0]
            self.untrusted_responses += report.untrusted[1]
            for status, reason in report.failures:
                self._on_failure(status, reason)
            for token, delivered, failed, worst, reason, last in report.finished:
                entry = worker.contexts.pop(token, None)
                if entry is not None:
                    self._on_result(entry[0], delivered, failed, worst, reason, last)

    def _fail(self, worker: _Worker, copies: int, token: int, why: tuple[int, str]) -> None:
        worker.in_flight -= copies
        for _ in range(copies):
            self._on_failure(*why)
        entry = worker.contexts.pop(token, None) if token else None
        if entry is not None:
            self._on_result(entry[0], 0, copies, *why, time.monotonic())

    def _lost(self, worker: _Worker) -> None:
        """The worker's end of the channel closed: every copy it held has failed."""
        if not worker.alive:
            return
        worker.alive = False
        assert self._loop is not None
        self._loop.remove_reader(worker.channel.fileno())
        if worker.backlog:
            self._loop.remove_writer(worker.channel.fileno())
            worker.backlog.clear()
        self._live = [w for w in self._workers if w.alive]
        held = worker.in_flight
        log.error(
            "delivery worker %d (pid %d) is gone; %d copies it held count as failed; "
            "%s until it is restarted", worker.index, worker.process.pid, held,
            f"its recipients go to the {len(self._live)} left" if self._live
            else "the sidecar sends every copy itself",
        )
        # Each copy it held and never reported ended fails now; a context whose copies
        # were not all reported ends with them (its copies counted as failed, as the
        # worker's own tally of those already ended is lost with it).
        for _ in range(held):
            self._on_failure(*_WORKER_GONE)
        now = time.monotonic()
        for context, copies in worker.contexts.values():
            self._on_result(context, 0, copies, *_WORKER_GONE, now)
        worker.contexts.clear()
        worker.in_flight = 0
        worker.channel.close()
        if not self._closing and worker.index not in self._restarts:
            task = self._loop.create_task(self._restart(worker))
            self._restarts[worker.index] = task
            task.add_done_callback(lambda _: self._restarts.pop(worker.index, None))

    async def _restart(self, dead: _Worker) -> None:
        """Start a worker in the place of `dead`, retrying with a growing pause."""
        code = await dead.process.wait()
        delay = _RESTART_FIRST
        while not self._closing:
            await asyncio.sleep(delay)
            log.info("delivery worker %d exited with %s; restarting it", dead.index, code)
            try:
                worker = await self._spawn(dead.index)
            except OSError as exc:
                log.error("cannot restart delivery worker %d: %s", dead.index, exc)
            else:
                try:
                    await asyncio.wait_for(self._hello(worker), _START_TIMEOUT)
                except (RuntimeError, TimeoutError, OSError) as exc:
                    log.error("delivery worker %d did not start again: %s", dead.index, exc)
                    worker.channel.close()
                    with contextlib.suppress(ProcessLookupError):
                        worker.process.kill()
                    code = await worker.process.wait()
                else:
                    if self._closing:  # stopped meanwhile: close() reaps it
                        self._workers[dead.index] = worker
                        return
                    assert self._loop is not None
                    self._loop.add_reader(worker.channel.fileno(), self._on_reports, worker)
                    self._workers[dead.index] = worker
                    self._live = [w for w in self._workers if w.alive]
                    self._on_restart()
                    return
            delay = min(delay * 2, _RESTART_MAX)

    # -- stopping ------------------------------------------------------------------------

    async def close(self) -> None:
        """Close the channels (each worker exits when it sees that) and reap them."""
        self._closing = True
        for task in list(self._restarts.values()):
            task.cancel()
        await asyncio.gather(*self._restarts.values(), return_exceptions=True)
        loop = asyncio.get_running_loop()
        for worker in self._workers:
            if worker.alive:
                with contextlib.suppress(ValueError, OSError):
                    loop.remove_reader(worker.channel.fileno())
                if worker.backlog:
                    with contextlib.suppress(ValueError, OSError):
                        loop.remove_writer(worker.channel.fileno())
            worker.alive = False
            worker.channel.close()
        self._live = []
        for worker in self._workers:
            try:
                await asyncio.wait_for(worker.process.wait(), _EXIT_TIMEOUT)
            except TimeoutError:
                log.error("delivery worker %d did not exit; killing it", worker.index)
                with contextlib.suppress(ProcessLookupError):
                    worker.process.kill()
                await worker.process.wait()
        self._workers = []
