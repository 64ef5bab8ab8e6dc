"""Call-IDs, tags and branches for what the endpoint sends: unique, cheap, injectable.

The one source of randomness in the SIP core is here, at construction: a test passes a
fixed prefix and gets deterministic ids.
"""

from __future__ import annotations

import itertools
import secrets

__all__ = ["IdSource"]


class IdSource:
    """Call-IDs, tags and branches: a random prefix and a counter, unique and cheap.

    Pass a fixed prefix to make them deterministic in tests.
    """

    __slots__ = ("_counter", "_prefix")

    def __init__(self, prefix: str | None = None) -> None:
        self._prefix = secrets.token_hex(6) if prefix is None else prefix
        self._counter = itertools.count(1)

    def _next(self) -> str:
        return f"{self._prefix}-{next(self._counter):x}"

    def request_ids(self) -> tuple[str, str, str]:
        """Branch (after the magic cookie), From tag and Call-ID of one new request."""
        counter, prefix = self._counter, self._prefix
        return (
            f"{prefix}-{next(counter):x}",
            f"{prefix}-{next(counter):x}",
            f"{prefix}-{next(counter):x}",
        )

    def call_id(self) -> str:
        return self._next()

    def tag(self) -> str:
        return self._next()

    def branch(self) -> str:
        """The part after the z9hG4bK magic cookie."""
        return self._next()
