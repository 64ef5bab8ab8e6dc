from __future__ import annotations

import pytest

from imc_sidecar.sip.uri import SipUri, UriError, parse_uri


@pytest.mark.parametrize(
    ("text", "user", "host", "port", "params"),
    [
        ("sip:alice@example.com", "alice", "example.com", None, ()),
        ("SIP:alice@Example.com:5070", "alice", "Example.com", 5070, ()),
        ("sips:alice:secret@h", "alice", "h", None, ()),
        ("sip:h;transport=TCP;lr", "", "h", None, (("transport", "TCP"), ("lr", None))),
        ("sip:a;b=c@h", "a;b=c", "h", None, ()),
        ("sip:a@[2001:db8::1]:5060;x=1", "a", "[2001:db8::1]", 5060, (("x", "1"),)),
        ("sip:a@h?subject=hi&x=y", "a", "h", None, ()),
        ("sip:a?b@h", "a?b", "h", None, ()),  # '?' is a legal user character
        ("sip:a@h;;maddr=x", "a", "h", None, (("maddr", "x"),)),
    ],
)
def test_parse(
    text: str, user: str, host: str, port: int | None, params: tuple[tuple[str, str | None], ...]
) -> None:
    uri = parse_uri(text)
    assert (uri.user, uri.host, uri.port, uri.params, uri.text) == (user, host, port, params, text)
    assert str(uri) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "alice@h",
        ":a@h",
        "tel:+1234",
        "sip:",
        "sip:@h",
        "sip:a@",
        "sip:a b@h",
        "sip:a@h:",
        "sip:a@h:0",
        "sip:a@h:65536",
        "sip:a@h:x",
        "sip:a@h:\u0665",  # a non-ASCII digit is not a port
        "sip:a@h:" + "1" * 5000,  # more digits than int() converts: out of range, no ValueError
        "sip:a@h:" + "0" * 5000,
        "sip:a@[::1",
        "sip:a@[::1]x",
        "sip:a@h h",
        "sip:a@h;=x",
    ],
)
def test_reject(text: str) -> None:
    with pytest.raises(UriError):
        parse_uri(text)


def test_port_leading_zeros() -> None:
    assert parse_uri("sip:a@h:005070").port == 5070
    assert parse_uri("sip:a@h:" + "0" * 5000 + "5070").port == 5070


def test_transport_and_aor() -> None:
    assert parse_uri("sip:a@h:5080;transport=TCP").transport == "tcp"
    assert parse_uri("sip:a@h;transport").transport is None
    assert parse_uri("sip:a@h").transport is None
    assert parse_uri("sip:a@h:5080;x=1").aor == "sip:a@h"
    assert parse_uri("sip:h:5080").aor == "sip:h"
    assert isinstance(parse_uri("sip:h"), SipUri)
