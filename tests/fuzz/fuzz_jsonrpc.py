"""Target `jsonrpc`: the JSON-RPC adapter (rpc/jsonrpc.py) with the real method registry
over a real engine holding rooms, for any request text.

Holds:

* `start_json` never raises, nor `handle_json` for an async method; such a method's
  coroutine finishes without waiting on anything while history is off;
* every reply is an HTTP status, a reason phrase fit for a status line (printable, no
  CR/LF) and a body that is one JSON object with `"jsonrpc": "2.0"` and a `result` or an
  `error`;
* no method raises (jsonrpcserver's -32603 "Internal Error" would say one did);
* a refused request (a fault, or no body at all) leaves the rooms and the statistics
  as they were;
* the history page parser (`parse_page_request`) raises only RpcFault on any params,
  and the FIFO's `string_member` never raises.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Coroutine
from typing import Any

from common import rpc_state
from rpc_support import ROOMS, Context

from imc_sidecar.rpc.history_methods import parse_page_request
from imc_sidecar.rpc.jsonrpc import JsonReply, handle_json, start_json, string_member
from imc_sidecar.rpc.methods import build_registry
from imc_sidecar.rpc.registry import RpcFault

REGISTRY = build_registry()


def _settle(reply: JsonReply | Coroutine[Any, Any, JsonReply]) -> JsonReply:
    """The reply of an async method, which must not need an event loop here."""
    if isinstance(reply, tuple):
        return reply
    try:
        reply.send(None)
    except StopIteration as done:
        return done.value
    reply.close()
    raise AssertionError("an async method waited although history is off")


def _check_reply(reply: JsonReply) -> dict[str, Any] | None:
    status, reason, body = reply
    assert 100 <= status < 600, status
    assert reason and reason.isprintable(), reason
    if body is None:
        return None
    doc = json.loads(body.decode("utf-8", "surrogateescape"), strict=False)
    assert isinstance(doc, dict) and doc["jsonrpc"] == "2.0", doc
    assert ("result" in doc) != ("error" in doc), doc
    if "error" in doc:
        assert doc["error"]["code"] != -32603, doc  # a method raised
    return doc


def _check_pages(text: bytes) -> None:
    """`sidecar.events`/`messages` params, read as a request carrying them would be."""
    try:
        doc = json.loads(text.decode("utf-8", "surrogateescape"))
    except (ValueError, RecursionError):
        return
    params = doc.get("params") if isinstance(doc, dict) else doc
    if not isinstance(params, list):
        params = [params]
    for which in ("events", "messages"):
        with contextlib.suppress(RpcFault):
            parse_page_request(which, params)


def one_input(data: bytes) -> None:
    context = Context(ROOMS)
    before = rpc_state(context)
    started = start_json(data, REGISTRY, context)
    doc = _check_reply(_settle(started))
    if doc is None or "error" in doc:
        assert rpc_state(context) == before, "a refused request changed something"
    if not isinstance(started, tuple):  # an async method: handle_json refuses it alike
        _check_reply(handle_json(data, REGISTRY, Context(ROOMS)))
    string_member(data, "reply_name")
    _check_pages(data)
