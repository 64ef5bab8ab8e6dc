"""Sans-I/O SIP: messages, stream framing, non-INVITE transactions and the endpoint."""

from .endpoint import (
    EndpointConfig,
    Peer,
    RequestCompleted,
    RequestReceived,
    ServerHandle,
    SipEndpoint,
    Transmit,
)
from .framing import StreamFramer
from .ids import IdSource
from .message import Headers, ParseError, Request, Response, SipError, Via
from .parse import parse_message
from .replies import response_bytes
from .uri import SipUri, UriError, parse_uri

__all__ = [
    "EndpointConfig",
    "Headers",
    "IdSource",
    "ParseError",
    "Peer",
    "Request",
    "RequestCompleted",
    "RequestReceived",
    "Response",
    "ServerHandle",
    "SipEndpoint",
    "SipError",
    "SipUri",
    "StreamFramer",
    "Transmit",
    "UriError",
    "Via",
    "parse_message",
    "parse_uri",
    "response_bytes",
]
