"""The jsonrpcs FIFO protocol, which `kamctl` speaks.

A client creates its own reply FIFO in the reply directory (kamctl:
`/tmp/kamailio_receiver_<pid>`), starts reading it, and writes a JSON request naming
it in `"reply_name"` into the server FIFO.  Requests are not delimited: a document
ends where its braces balance, counted outside strings.  The reply is written to
`<reply_dir>/<reply_name>` and the FIFO closed, which ends the client's read.

Safety, as jsonrpcs does it: the reply name may not contain `.`, `/` or `\\`, and the
file opened must be a FIFO that is neither a link nor hard-linked; a client that never
opens its end is given up on after a moment, so one broken client cannot stall others.
A request without a usable `reply_name` (including text that is not JSON) cannot be
answered and is dropped with a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import stat

from .jsonrpc import answer_json, string_member
from .registry import Registry, RpcContext

__all__ = ["MAX_DOCUMENT", "DocumentFramer", "FifoServer"]

log = logging.getLogger("imc_sidecar.rpc")

MAX_DOCUMENT = 65536  # jsonrpcs stops at 8 KiB; replies are not limited
_FIFO_MODE = 0o660  # jsonrpcs' fifo_mode default
_MAX_PATH = 127  # jsonrpcs' reply path buffer
_OPEN_WAIT = 1.0  # seconds a client may take to open its reply FIFO
_WRITE_WAIT = 5.0  # seconds a slow reader may take to drain a reply
# An unfinished request idle this long is dropped: unbalanced junk would otherwise
# swallow every later request (clients write a request in one go).
_IDLE_RESET = 1.0


class DocumentFramer:
    """Splits a byte stream into JSON documents by counting braces outside strings.

    A document longer than the limit is skipped to its end (the brace count goes on),
    so the stream stays in step with the writer; bytes between documents are dropped.
    """

    def __init__(self, limit: int = MAX_DOCUMENT) -> None:
        self.limit = limit
        self._buffer = bytearray()
        self._depth = 0
        self._in_string = False
        self._escaped = False
        self._skipping = False

    @property
    def pending(self) -> bool:
        """Part of a document (or noise) is waiting for more bytes."""
        return bool(self._buffer) or self._depth > 0 or self._in_string or self._skipping

    def reset(self) -> None:
        self._buffer.clear()
        self._depth = 0
        self._in_string = self._escaped = self._skipping = False

    def feed(self, data: bytes) -> list[bytes]:
        documents: list[bytes] = []
        start = 0
        for index, byte in enumerate(data):
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif byte == 0x5C:  # backslash
                    self._escaped = True
                elif byte == 0x22:  # quote
                    self._in_string = False
            elif byte == 0x22:
                self._in_string = True
            elif byte == 0x7B:  # {
                if self._depth == 0:  # whatever came before a document is noise
                    self._buffer.clear()
                    start = index
                self._depth += 1
            elif byte == 0x7D and self._depth > 0:  # }
                self._depth -= 1
                if self._depth == 0:
                    self._take(data[start : index + 1], documents)
                    start = index + 1
        self._keep(data[start:])
        return documents

    def _keep(self, chunk: bytes) -> None:
        if self._skipping:
            return
        if self._depth == 0 and not self._in_string:
            chunk = chunk.strip()  # blanks between documents
        self._buffer += chunk
        if len(self._buffer) > self.limit:
            log.warning("rpc fifo: request longer than %d bytes skipped", self.limit)
            self._buffer.clear()
            self._skipping = self._depth > 0 or self._in_string

    def _take(self, chunk: bytes, documents: list[bytes]) -> None:
        if self._skipping:
            self._skipping = False
            return
        self._buffer += chunk
        if len(self._buffer) > self.limit:
            log.warning("rpc fifo: request longer than %d bytes skipped", self.limit)
        else:
            documents.append(bytes(self._buffer).strip())
        self._buffer.clear()


class FifoServer:
    def __init__(
        self,
        path: str,
        reply_dir: str,
        registry: Registry,
        context: RpcContext,
        idle_reset: float = _IDLE_RESET,
    ) -> None:
        self.path = path
        self._idle_reset = idle_reset
        self.reply_dir = reply_dir
        self.registry = registry
        self.context = context
        self._framer = DocumentFramer()
        self._read_fd: int | None = None
        self._keep_fd: int | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        if not os.path.isdir(self.reply_dir):
            raise OSError(f"rpc_fifo_reply_dir {self.reply_dir} is not a directory")
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISFIFO(os.lstat(self.path).st_mode):
                raise OSError(f"{self.path} exists and is not a FIFO")
            os.unlink(self.path)  # a FIFO left by an earlier run
        os.mkfifo(self.path, _FIFO_MODE)
        os.chmod(self.path, _FIFO_MODE)
        self._read_fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        # Our own writer keeps the FIFO open, so the reader never sees end-of-file
        # (which would make the descriptor readable forever) between clients.
        self._keep_fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
        asyncio.get_running_loop().add_reader(self._read_fd, self._readable)

    async def close(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        if self._read_fd is not None:
            asyncio.get_running_loop().remove_reader(self._read_fd)
        for fd in (self._read_fd, self._keep_fd):
            if fd is not None:
                os.close(fd)
        self._read_fd = self._keep_fd = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(OSError):
            if stat.S_ISFIFO(os.lstat(self.path).st_mode):
                os.unlink(self.path)

    def _readable(self) -> None:
        assert self._read_fd is not None
        try:
            data = os.read(self._read_fd, 65536)
        except (BlockingIOError, InterruptedError):
            return
        loop = asyncio.get_running_loop()
        for document in self._framer.feed(data):
            task = loop.create_task(self._answer(document))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if self._idle is not None:
            self._idle.cancel()
        self._idle = loop.call_later(self._idle_reset, self._drop_partial) if (
            self._framer.pending
        ) else None

    def _drop_partial(self) -> None:
        self._idle = None
        log.warning("rpc fifo: incomplete request dropped after %g s", self._idle_reset)
        self._framer.reset()

    @property
    def partial(self) -> bool:
        """Whether an unfinished request is held (dropped after `idle_reset` seconds)."""
        return self._framer.pending

    async def _answer(self, document: bytes) -> None:
        name = string_member(document, "reply_name")
        if not name or any(c in name for c in "./\\\x00"):
            log.warning("rpc fifo: request without a usable reply_name dropped")
            return
        path = os.path.join(self.reply_dir, name)
        if len(path.encode()) > _MAX_PATH:
            log.warning("rpc fifo: reply path %s too long", path)
            return
        try:
            body = (await answer_json(document, self.registry, self.context))[2]
        except Exception:  # one bad request must never stop the transport
            log.exception("rpc fifo: request failed")
            return
        if body is None:
            return
        try:
            await _deliver(path, body)
        except (OSError, TimeoutError) as exc:
            log.warning("rpc fifo: cannot reply to %s: %s", path, exc)


async def _deliver(path: str, body: bytes) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _OPEN_WAIT
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
            break
        except OSError as exc:  # ENXIO: the client has not opened its end yet
            if exc.errno != errno.ENXIO or loop.time() >= deadline:
                raise
            await asyncio.sleep(0.05)
    try:
        _check_reply_fifo(fd, path)
        view = memoryview(body)
        async with asyncio.timeout(_WRITE_WAIT):
            while view:
                try:
                    view = view[os.write(fd, view) :]
                except BlockingIOError:
                    await _writable(loop, fd)
    finally:
        os.close(fd)


def _check_reply_fifo(fd: int, path: str) -> None:
    opened = os.fstat(fd)
    if not stat.S_ISFIFO(opened.st_mode):
        raise OSError(f"{path} is not a FIFO")
    if opened.st_nlink > 1:
        raise OSError(f"{path} is hard-linked")
    named = os.lstat(path)
    if (named.st_dev, named.st_ino) != (opened.st_dev, opened.st_ino):
        raise OSError(f"{path} was replaced while opening it")


async def _writable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    ready: asyncio.Future[None] = loop.create_future()
    loop.add_writer(fd, ready.set_result, None)
    try:
        await ready
    finally:
        loop.remove_writer(fd)
