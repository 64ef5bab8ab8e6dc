"""A kamctl-style FIFO client for tests, with no sleeps: the reply FIFO is opened for
reading before the request is written, so the server always finds its reader."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path


async def fifo_call(server_path: Path, reply_dir: Path, request: bytes, name: str,
                    timeout: float = 3.0) -> bytes:
    """Write `request` (naming `name` as its reply FIFO) and return the whole reply."""
    reply_path = reply_dir / name
    os.mkfifo(reply_path)
    reader = os.open(reply_path, os.O_RDONLY | os.O_NONBLOCK)  # a reader from now on
    try:
        writer = os.open(server_path, os.O_WRONLY | os.O_NONBLOCK)
        os.write(writer, request)
        os.close(writer)
        return await _read_until_closed(reader, timeout)
    finally:
        os.close(reader)
        reply_path.unlink()


async def _read_until_closed(fd: int, timeout: float) -> bytes:
    """Everything written to the FIFO until its writer closes it.  Before a writer ever
    opened it, the read end is neither readable nor at its end (Linux), so the wait is
    for the server, not for a guessed delay."""
    loop = asyncio.get_running_loop()
    chunks: list[bytes] = []
    done = loop.create_future()

    def readable() -> None:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        if chunk:
            chunks.append(chunk)
        elif not done.done():
            done.set_result(None)

    loop.add_reader(fd, readable)
    try:
        async with asyncio.timeout(timeout):
            await done
    finally:
        loop.remove_reader(fd)
    return b"".join(chunks)
