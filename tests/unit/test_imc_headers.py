"""Headers imc adds to its MESSAGEs (Kamailio 5.6 order) and the extra_hdrs check."""

from __future__ import annotations

import pytest

from imc_sidecar.imc.headers import header_block, validate_extra_hdrs
from imc_sidecar.imc.outcome import Outgoing


def out(**kwargs: object) -> Outgoing:
    return Outgoing(("sip:a@d",), "sip:r@d", b"x", **kwargs)  # type: ignore[arg-type]


def test_order_without_extra_headers() -> None:
    assert header_block(out(in_reply_to="cid-1"), "") == (
        b"Content-Type: text/plain\r\nSupported: kamailio/imc\r\nIn-Reply-To: cid-1\r\n"
    )


def test_extra_headers_go_before_in_reply_to() -> None:
    block = header_block(
        out(content_type="text/plain;charset=UTF-8", in_reply_to="c"), "X-A: 1\r\n"
    )
    assert block == (
        b"Content-Type: text/plain;charset=UTF-8\r\n"
        b"Supported: kamailio/imc\r\n"
        b"X-A: 1\r\n"
        b"In-Reply-To: c\r\n"
    )


def test_missing_final_crlf_is_added() -> None:
    # Kamailio glues In-Reply-To onto the last extra line instead.
    block = header_block(out(in_reply_to="c"), "X-A: 1")
    assert block.endswith(b"X-A: 1\r\nIn-Reply-To: c\r\n")


def test_no_in_reply_to_without_call_id() -> None:
    assert header_block(out(), "") == b"Content-Type: text/plain\r\nSupported: kamailio/imc\r\n"


def test_invite_failure_notice_carries_only_extra_headers() -> None:
    assert header_block(out(imc_headers=False, in_reply_to="c"), "X-A: 1\r\n") == b"X-A: 1\r\n"
    assert header_block(out(imc_headers=False), "") == b""


def test_validate_accepts_and_normalizes() -> None:
    assert validate_extra_hdrs("") == ""
    assert validate_extra_hdrs("X-A: 1") == "X-A: 1\r\n"
    assert validate_extra_hdrs("X-A: 1\r\nP-Asserted-Identity: <sip:a@d>\r\n") == (
        "X-A: 1\r\nP-Asserted-Identity: <sip:a@d>\r\n"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("X-A: 1\nX-B: 2", "bare CR or LF"),
        ("X-A: 1\r\n\r\nX-B: 2", "'Name: value'"),
        ("no colon here", "'Name: value'"),
        (": value", "'Name: value'"),
        ("Bad Name: 1", "not a valid SIP header name"),
        (" X-A: folded", "not a valid SIP header name"),
        ("X|Y: 1", "not a valid SIP header name"),  # an HTTP token, not a SIP one
        ("X#Y: 1", "not a valid SIP header name"),
        ("X-A: a\x01b", "control characters"),
        ("Content-Length: 0", "written by the server"),
        ("via: SIP/2.0/UDP h", "written by the server"),
        ("l: 5", "written by the server"),
        ("In-Reply-To: x", "written by the server"),
        ("X-Long: " + "a" * 1000, "too long"),
    ],
)
def test_validate_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_extra_hdrs(text)


def test_size_limit_counts_the_fixed_headers() -> None:
    fixed = len(b"Content-Type: text/plain\r\nSupported: kamailio/imc\r\n")
    room = 1024 - fixed - len("X: \r\n")
    validate_extra_hdrs("X: " + "a" * (room - 1))
    with pytest.raises(ValueError, match="too long"):
        validate_extra_hdrs("X: " + "a" * room)
