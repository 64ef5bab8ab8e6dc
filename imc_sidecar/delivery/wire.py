"""What the sidecar and its delivery workers say to each other: plain data, no I/O.

Both ends are the same interpreter running the same code (the worker is started by the
sidecar with `sys.executable`), so `marshal`, the fastest serializer for plain tuples,
is safe here.  Each message is one SOCK_SEQPACKET record, so no framing is needed.

Sidecar → worker, one record per fan-out: a *job* `(token, from_uri, body, headers,
recipients)`.  `token` 0 means nobody needs to hear how the copies ended beyond the
count; any other token is also reported back once, when the last of its copies has
ended.

Worker → sidecar, one record per batch of answers: a *report* `(answered, failures,
finished)`: `answered` counts the copies answered 2xx since the last report and
`failures` lists `(status, reason)` for each copy that failed, token or not, so that
each copy stops counting as pending (and a failure is counted) when it ends, not when
the slowest copy of its fan-out does; `finished` lists, for each token whose copies
have all ended, `(token, delivered, failed, worst status, its reason, when the last
one ended)`, that time on the system-wide monotonic clock (the same `time.monotonic()`
in every process), for the usage history and failed invitations.  A count rather than
an entry per answered copy: per-copy work on the sidecar's side is what the workers
exist to take away.  The first record a worker sends is its *hello*: the UDP
address it sends from.
"""

from __future__ import annotations

import marshal
from dataclasses import dataclass

__all__ = [
    "Finished",
    "Hello",
    "Job",
    "Report",
    "WireError",
    "decode_hello",
    "decode_job",
    "decode_report",
    "encode_hello",
    "encode_job",
    "encode_report",
]

# Big enough for a fan-out of a 64 KiB body to thousands of members in one record.
MAX_RECORD = 4 * 1024 * 1024
_HELLO = "imc-delivery/1"


class WireError(ValueError):
    """A record that is not what the other end should have sent."""


@dataclass(frozen=True, slots=True)
class Job:
    token: int
    from_uri: str
    body: bytes
    headers: bytes
    recipients: tuple[str, ...]


# (token, delivered, failed, worst status or 0, its reason, monotonic time of the last)
Finished = tuple[int, int, int, int, str, float]


@dataclass(frozen=True, slots=True)
class Report:
    answered: int
    failures: list[tuple[int, str]]  # (status, reason) of every copy that failed
    finished: list[Finished]
    untrusted: tuple[int, int] = (0, 0)  # (requests refused, responses ignored) since

    @property
    def copies(self) -> int:
        """How many copies ended, all told (`finished` sums up copies counted here)."""
        return self.answered + len(self.failures)


@dataclass(frozen=True, slots=True)
class Hello:
    host: str
    port: int


def encode_job(
    token: int, from_uri: str, body: bytes, headers: bytes, recipients: tuple[str, ...]
) -> bytes:
    return marshal.dumps((token, from_uri, body, headers, recipients))


def decode_job(record: bytes | memoryview) -> Job:
    try:
        token, from_uri, body, headers, recipients = marshal.loads(record)
    except (EOFError, ValueError, TypeError) as exc:
        raise WireError(f"bad job record: {exc}") from None
    if not (isinstance(token, int) and isinstance(from_uri, str) and isinstance(body, bytes)
            and isinstance(headers, bytes) and isinstance(recipients, tuple)):
        raise WireError("bad job record: wrong field types")
    return Job(token, from_uri, body, headers, recipients)


def encode_report(
    answered: int,
    failures: list[tuple[int, str]],
    finished: list[Finished],
    untrusted: tuple[int, int] = (0, 0),
) -> bytes:
    return marshal.dumps((answered, failures, finished, untrusted))


def decode_report(record: bytes) -> Report:
    try:
        answered, failures, finished, untrusted = marshal.loads(record)
    except (EOFError, ValueError, TypeError) as exc:
        raise WireError(f"bad report record: {exc}") from None
    if not (isinstance(answered, int) and isinstance(failures, list)
            and isinstance(finished, list) and isinstance(untrusted, tuple)
            and len(untrusted) == 2 and all(isinstance(n, int) for n in untrusted)):
        raise WireError("bad report record: wrong field types")
    return Report(answered, failures, finished, untrusted)


def encode_hello(host: str, port: int) -> bytes:
    return marshal.dumps((_HELLO, host, port))


def decode_hello(record: bytes) -> Hello:
    try:
        magic, host, port = marshal.loads(record)
    except (EOFError, ValueError, TypeError) as exc:
        raise WireError(f"bad hello record: {exc}") from None
    if magic != _HELLO or not isinstance(host, str) or not isinstance(port, int):
        raise WireError(f"bad hello record: {magic!r}")
    return Hello(host, port)
