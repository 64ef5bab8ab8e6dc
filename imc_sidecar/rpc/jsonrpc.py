"""JSON-RPC as Kamailio 5.6's jsonrpcs module speaks it: the one adapter every JSON
transport (HTTP, datagrams, FIFO) calls.

jsonrpcserver 5 does the dispatch (method lookup, calling, catching a failing handler)
and stays behind this module.  Around it sit Kamailio's envelope rules, which differ
from the JSON-RPC spec and from jsonrpcserver's defaults:

* `jsonrpc` must be "2.0" and `method` a string, else the reply is a bare
  `"result": {}` (no error); member names are matched case-insensitively and the
  first of duplicates wins;
* an unknown method is fault 500 "Method Not Found", not -32601;
* `params` may be an array or an object whose member names are ignored (values in
  document order); any other type is again a bare `"result": {}`; extra params are
  ignored by every method;
* the `id` is echoed: a string as a string, anything else as a number (true is 1,
  null or a container 0); a request without `id` still gets a reply, without `id`;
* a fault's HTTP status is its code (500 when the code is not an HTTP status) and its
  reason phrase the fault text; codes in jsonrpcs' table carry the table's text;
* the body is printed as jsonrpcs prints it by default (pretty_format 1): tab
  indentation, `", "` between array items, cJSON's number formats.

Deliberate difference: text that is not JSON gets a -32700 "Parse Error" reply, where
Kamailio answers nothing at all.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from jsonrpcserver import Error, Success, dispatch_to_serializable

from .registry import Registry, RpcContext, RpcFault, RpcReply, RpcStruct

__all__ = [
    "JsonReply",
    "answer_json",
    "fault_body",
    "handle_json",
    "render",
    "start_json",
    "string_member",
]

# (HTTP status, reason phrase, body); body None: nothing to answer.
JsonReply = tuple[int, str, bytes | None]

_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
# jsonrpcs' error table: for these codes its text replaces the handler's.
_TABLE = {
    -32700: "Parse Error",
    -32600: "Invalid Request",
    -32601: "Method Not Found",
    -32602: "Invalid Parameters",
    -32603: "Internal Error",
    -32000: "Execution Error",
}
_MAX_FAULT_TEXT = 127  # jsonrpcs formats fault texts into a 128-byte buffer
_MISSING = object()
_SPACE = " \t\r\n"
# Characters Kamailio's parser drops from strings: \u0000 and unpaired surrogates, except
# U+DC80-U+DCFF, which stand for raw non-UTF-8 bytes here (surrogateescape) and go back
# out unchanged, as Kamailio passes such bytes through.
_DROPPED = re.compile("[\x00\ud800-\udc7f\udd00-\udfff]")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
            "\t": "\\t"}
_NEEDS_ESCAPE = re.compile('["\\\\\x00-\x1f]')


class _Object(dict[str, Any]):
    """A JSON object: first of duplicate names in the dict, every member in `pairs`."""

    pairs: list[tuple[str, Any]]


def _object(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object()
    for key, value in pairs:
        obj.setdefault(key, value)
    obj.pairs = pairs
    return obj


def _no_constants(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(object_pairs_hook=_object, parse_constant=_no_constants,
                            strict=False)


def _parse(text: bytes) -> object:
    """One JSON value; text after it is ignored, as srjson_Parse() ignores it."""
    decoded = text.decode("utf-8", "surrogateescape")
    start = len(decoded) - len(decoded.lstrip(_SPACE))
    try:
        value, _end = _DECODER.raw_decode(decoded, start)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    return value


def _clean(text: str) -> str:
    return _DROPPED.sub("", text) if _DROPPED.search(text) else text


def _member(obj: _Object, name: str) -> object:
    """Kamailio's srjson_GetObjectItem(): case-insensitive, first match."""
    if name in obj:
        return obj[name]
    for key, value in obj.pairs:
        if key.lower() == name:
            return value
    return _MISSING


# -- output: srjson_Print() of the 5.6 series --------------------------------------------


def _number(value: float) -> str:
    if not math.isfinite(value):
        return "null"
    if _INT_MIN <= value <= _INT_MAX and value == int(value):
        return str(int(value))
    if value == math.floor(value) and abs(value) < 1.0e60:
        return f"{value:.0f}"
    if abs(value) < 1.0e-6 or abs(value) > 1.0e9:
        return f"{value:e}"
    return f"{value:f}"


def _string(text: str) -> str:
    if _NEEDS_ESCAPE.search(text):
        text = _NEEDS_ESCAPE.sub(
            lambda m: _ESCAPES.get(m.group(), f"\\u{ord(m.group()):04x}"), text
        )
    return f'"{text}"'


def _value(value: object, depth: int) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        # srjson holds numbers as doubles: big counters print through "%.0f".
        return str(value) if _INT_MIN <= value <= _INT_MAX else _number(float(value))
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, dict):
        depth += 1
        tabs = "\t" * depth
        body = ",\n".join(f"{tabs}{_string(str(k))}:\t{_value(v, depth)}" for k, v in value.items())
        return "{\n" + (body + "\n" if body else "") + "\t" * (depth - 1) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(item, depth + 1) for item in value) + "]"
    raise TypeError(f"cannot put {type(value).__name__} into a JSON-RPC reply")


def render(members: dict[str, object]) -> bytes:
    """A reply object as jsonrpcs prints it; strings go out as the UTF-8 they came in."""
    text = _value(members, 0)
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


# -- envelopes ---------------------------------------------------------------------------


def _echo_id(raw: object) -> object:
    if isinstance(raw, str):
        return _clean(raw)
    if isinstance(raw, bool):
        return 1 if raw else 0
    if isinstance(raw, int | float):
        return float(raw)  # srjson re-emits the id from its double
    return 0


def _envelope(key: str, value: object, request_id: object) -> bytes:
    members: dict[str, object] = {"jsonrpc": "2.0", key: value}
    if request_id is not _MISSING:
        members["id"] = _echo_id(request_id)
    return render(members)


def _fault(code: int, message: str, request_id: object) -> JsonReply:
    text = _TABLE.get(code) or message[:_MAX_FAULT_TEXT] or "Unexpected Error"
    body = _envelope("error", RpcStruct(code=code, message=text), request_id)
    status = code if 100 < code < 600 else (400 if code == -32700 else 500)
    return status, _reason(text), body


def _reason(text: str) -> str:
    """A fault text usable as an HTTP reason phrase (no control characters)."""
    return "".join(c if c.isprintable() else " " for c in text) or "Error"


def string_member(text: bytes, name: str) -> str | None:
    """A top-level string member of a request (the FIFO's `reply_name`); None if absent."""
    try:
        doc = _parse(text)
    except ValueError:
        return None
    value = _member(doc, name) if isinstance(doc, _Object) else None
    return _clean(value) if isinstance(value, str) else None


def fault_body(code: int, message: str) -> bytes:
    """A fault reply to no particular request (no id), for a transport's own errors."""
    body = _fault(code, message, _MISSING)[2]
    assert body is not None
    return body


def _result(reply: RpcReply) -> object:
    if reply.array:
        return list(reply.values)
    return reply.values[-1] if reply.values else RpcStruct()


@dataclass(frozen=True, slots=True)
class _Call:
    name: str
    params: list[object]
    request_id: object


def _prepare(text: bytes, registry: Registry) -> JsonReply | _Call:
    """The envelope rules: a reply when they already decide it, else the call to make."""
    if not text.strip(b" \t\r\n"):
        return 400, "Empty Request", None
    try:
        doc = _parse(text)
    except ValueError:
        return _fault(-32700, "", _MISSING)
    if not isinstance(doc, _Object):  # an array (a batch) or a scalar: no request
        return 200, "OK", _envelope("result", RpcStruct(), _MISSING)
    request_id = _member(doc, "id")
    version = _member(doc, "jsonrpc")
    name = _member(doc, "method")
    if version != "2.0" or not isinstance(name, str):
        return 200, "OK", _envelope("result", RpcStruct(), request_id)
    name = _clean(name)
    raw_params = _member(doc, "params")
    if raw_params is _MISSING:
        params: list[object] = []
    elif isinstance(raw_params, _Object):
        params = [value for _key, value in raw_params.pairs]  # names ignored, order kept
    elif isinstance(raw_params, list):
        params = raw_params
    elif registry.get(name) is not None:
        return 200, "OK", _envelope("result", RpcStruct(), request_id)
    else:
        params = []
    params = [_clean(p) if isinstance(p, str) else p for p in params]
    return _Call(name, params, request_id)


def start_json(
    text: bytes, registry: Registry, context: RpcContext
) -> JsonReply | Coroutine[Any, Any, JsonReply]:
    """The reply to one request document, or for an async method a coroutine giving it.

    Sync methods are answered here and now, as before async methods existed; only a
    transport that has an async method's coroutine needs to wait.
    """
    call = _prepare(text, registry)
    if not isinstance(call, _Call):
        return call
    if _is_async(registry, call.name):
        return _dispatch_async(call, registry, context)
    return _dispatch_sync(call, registry, context)


async def answer_json(text: bytes, registry: Registry, context: RpcContext) -> JsonReply:
    """Answer one JSON-RPC request document, sync or async method alike."""
    reply = start_json(text, registry, context)
    return reply if isinstance(reply, tuple) else await reply


def handle_json(text: bytes, registry: Registry, context: RpcContext) -> JsonReply:
    """Answer one request document without waiting: (HTTP status, reason, body).

    An async method cannot be answered this way and gets a fault; the transports use
    `start_json` or `answer_json`.
    """
    call = _prepare(text, registry)
    if not isinstance(call, _Call):
        return call
    if _is_async(registry, call.name):
        return _fault(500, "Method needs an asynchronous transport", call.request_id)
    return _dispatch_sync(call, registry, context)


def _is_async(registry: Registry, name: str) -> bool:
    method = registry.get(name)
    return method is not None and method.is_async


def _dispatch_sync(call: _Call, registry: Registry, context: RpcContext) -> JsonReply:
    return _dispatch(call, registry, context,
                     lambda: registry.call(context, call.name, call.params))


async def _dispatch_async(call: _Call, registry: Registry, context: RpcContext) -> JsonReply:
    outcome: RpcReply | Exception
    try:
        outcome = await registry.call_async(context, call.name, call.params)
    except Exception as exc:  # re-raised inside the dispatcher below, like a sync failure
        outcome = exc

    def settled() -> RpcReply:
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return _dispatch(call, registry, context, settled)


def _dispatch(
    call: _Call, registry: Registry, context: RpcContext, run: Callable[[], RpcReply]
) -> JsonReply:
    def invoke(ctx: RpcContext, *args: object) -> Any:
        try:
            return Success(run())
        except RpcFault as fault:
            return Error(fault.code, fault.message)

    # jsonrpcserver sees a plain, valid request; the envelope rules are applied here.
    # It also turns any other exception into -32603, for sync and async methods alike.
    methods = {call.name: invoke} if registry.get(call.name) is not None else {}
    request = {"jsonrpc": "2.0", "method": call.name, "params": call.params, "id": 0}
    response = dispatch_to_serializable(
        "",
        methods=methods,
        context=context,
        deserializer=lambda _text: request,
        validator=lambda _doc: _doc,
    )
    assert isinstance(response, dict)
    request_id = call.request_id
    if "error" in response:
        error = response["error"]
        code = int(error["code"])
        if code == -32601:  # jsonrpcserver's "Method not found"
            return _fault(500, "Method Not Found", request_id)
        return _fault(code, str(error["message"]), request_id)
    return 200, "OK", _envelope("result", _result(response["result"]), request_id)
