"""Errors of the SIP layer."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .headers import Headers

__all__ = ["ParseError", "SipError"]


class SipError(Exception):
    """Base class for errors of the SIP layer."""


class ParseError(SipError):
    """A message that cannot be accepted; `status`/`reason` are the reply to give.

    When the start line was a request line and the header block could be split,
    `method` and `headers` are set, so the caller can still address a 400 to the sender.
    """

    def __init__(
        self,
        reason: str,
        status: int = 400,
        *,
        method: str | None = None,
        headers: Headers | None = None,
    ) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.method = method
        self.headers = headers
