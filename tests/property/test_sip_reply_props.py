"""What the SIP parser accepts, the endpoint can use: header values `Headers` itself
accepts, a reply that parses back with its To-tag, a UDP port to answer to.  The same
rule as the atheris targets' (sip_checks.py), over the near-valid requests of
test_sip_scan_request_props; the examples are what the fuzz campaign found."""

from __future__ import annotations

from hypothesis import example, given, settings
from sip_checks import check_parse
from test_sip_scan_request_props import requests

HEAD = "MESSAGE sip:a@h SIP/2.0\r\nFrom: <sip:b@h>;tag=1\r\nCall-ID: c\r\nCSeq: 1 MESSAGE\r\n"


@settings(max_examples=1000, deadline=None)
@given(data=requests())
@example((HEAD + "Via: SIP/2.0/UDP h;branch=z9hG4bK\x00\r\nTo: <sip:a@h>\r\n\r\n").encode())
@example((HEAD + "Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: sip:a@h;x=\"y\r\n\r\n").encode())
@example((HEAD + "Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:a@h>;tag\r\n\r\n").encode())
@example((HEAD + "Via: SIP/2.0/UDP h;branch=z9hG4bK1;rport=99999\r\nTo: <sip:a@h>\r\n\r\n")
         .encode())
def test_an_accepted_request_can_be_answered(data: bytes) -> None:
    check_parse(data)
