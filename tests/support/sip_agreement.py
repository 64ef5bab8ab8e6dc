"""The one rule for "a fast scan agrees with the full parser", shared by the hypothesis
properties (tests/property/test_sip_scan_*_props.py) and the atheris targets (tests/fuzz).

A scan may always answer None ("not sure"); whatever else it answers must be exactly
what `parse_message` makes of the same bytes.  Each check raises AssertionError (or the
parser's ParseError, when the scan took bytes the parser refuses) on a disagreement.
"""

from __future__ import annotations

from imc_sidecar.sip.message import Request, Response
from imc_sidecar.sip.parse import parse_message
from imc_sidecar.sip.scan import scan_request, scan_response

__all__ = ["check_request_scan", "check_response_scan"]


def check_request_scan(data: bytes) -> None:
    """`scan_request(data)` is None or equal to `parse_message(data)`, cached views and
    header names as written included."""
    scanned = scan_request(data)
    if scanned is None:
        return
    message = parse_message(data)  # must not raise: the scan accepted it
    assert isinstance(message, Request)
    assert scanned == message
    assert scanned.headers.entries == message.headers.entries  # names as written too
    assert scanned.headers._firsts == message.headers._firsts
    for cached in ("_via", "_cseq", "_from", "_to"):
        assert getattr(scanned, cached) == getattr(message, cached)


def check_response_scan(data: bytes) -> None:
    """`scan_response(data)` is None or the matching fields `parse_message` gives."""
    scanned = scan_response(data)
    if scanned is None:
        return
    message = parse_message(data)  # must not raise: the scan accepted it
    assert isinstance(message, Response)
    assert scanned == (message.status, message.reason, message.top_via.branch, message.cseq[1])
