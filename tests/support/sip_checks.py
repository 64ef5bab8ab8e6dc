"""What the SIP parser must hold of any bytes, shared by the atheris targets (tests/fuzz)
and the hypothesis properties (tests/property/test_sip_reply_props.py): it raises
nothing but ParseError, and a request it accepts can be answered and routed the way
the endpoint does it."""

from __future__ import annotations

import contextlib

from imc_sidecar.sip.errors import ParseError
from imc_sidecar.sip.headers import Headers
from imc_sidecar.sip.message import Request, Response
from imc_sidecar.sip.parse import parse_message
from imc_sidecar.sip.replies import reply_bytes, response_bytes
from imc_sidecar.sip.routing import apply_received, response_address

__all__ = ["check_parse"]

SOURCE = ("192.0.2.7", 5070)  # where the datagram came from
TO_TAG = "fz1"


def check_parse(data: bytes) -> None:
    try:
        message = parse_message(data)
    except ParseError as exc:
        if exc.headers is not None:  # the endpoint answers these from the headers alone
            reply_bytes(exc.headers, exc.status, exc.reason, TO_TAG, ())
        return
    if isinstance(message, Request):
        _check_request(message)
    else:
        _check_response(message)


def _check_request(request: Request) -> None:
    """Its headers are ones `Headers` itself accepts (the parser builds them unchecked),
    the 200 we would send parses back as the answer to this request, and the UDP address
    it would go to is a real one."""
    Headers([(name, value) for _key, name, value in request.headers.entries])
    reply = parse_message(response_bytes(request, 200, "OK", to_tag=TO_TAG))
    assert isinstance(reply, Response)
    assert (reply.status, reply.call_id, reply.cseq) == (200, request.call_id, request.cseq)
    assert reply.top_via == request.top_via
    assert reply.to_tag is not None
    _host, port = response_address(apply_received(request, SOURCE).top_via)
    assert 0 < port < 65536, port


def _check_response(response: Response) -> None:
    """The views parsed lazily raise only ParseError."""
    for view in ("from_addr", "to_addr", "content_type"):
        with contextlib.suppress(ParseError):
            getattr(response, view)
