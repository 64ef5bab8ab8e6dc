"""The JSON-RPC adapter: Kamailio 5.6.3 jsonrpcs envelopes, byte for byte.

Every expected body below was captured from Debian's kamailio 5.6.3 (jsonrpcs with
its default pretty_format) for the same request; tests/e2e/test_rpc_json.py repeats
the comparison against a live Kamailio.
"""

from __future__ import annotations

import pytest
from rpc_support import ROOMS, Context

from imc_sidecar.rpc.jsonrpc import fault_body, handle_json, render, string_member
from imc_sidecar.rpc.methods import build_registry
from imc_sidecar.rpc.registry import Registry, RpcMethod, RpcReply, RpcStruct

REGISTRY = build_registry()


def _json(text: bytes, context: Context | None = None,
          registry: Registry = REGISTRY) -> tuple[int, str, bytes | None]:
    return handle_json(text, registry, context or Context(ROOMS))


def _body(text: bytes) -> str:
    body = _json(text)[2]
    assert body is not None
    return body.decode()


LIST_ROOMS = (
    '{\n\t"jsonrpc":\t"2.0",\n\t"result":\t[{\n'
    '\t\t\t"room":\t"sip:chat-2@example.com",\n\t\t\t"members":\t1,\n'
    '\t\t\t"owner":\t"sip:dave@example.com"\n\t\t}, {\n'
    '\t\t\t"room":\t"sip:chat-1@example.com",\n\t\t\t"members":\t3,\n'
    '\t\t\t"owner":\t"sip:alice@example.com"\n\t\t}, {\n'
    '\t\t\t"room":\t"sip:lonely@example.com",\n\t\t\t"members":\t1,\n'
    '\t\t\t"owner":\t"sip:erin@example.com"\n\t\t}],\n\t"id":\t1\n}'
)


def test_list_rooms_bytes() -> None:
    assert _json(b'{"jsonrpc":"2.0","method":"imc.list_rooms","id":1}') == (
        200, "OK", LIST_ROOMS.encode()
    )


def test_list_rooms_empty_is_an_empty_array() -> None:
    body = _json(b'{"jsonrpc":"2.0","method":"imc.list_rooms","id":1}', Context())[2]
    assert body == b'{\n\t"jsonrpc":\t"2.0",\n\t"result":\t[],\n\t"id":\t1\n}'


def test_list_members_object_params_and_no_id() -> None:
    text = (b'{"jsonrpc":"2.0","method":"imc.list_members",'
            b'"params":{"x":"sip:chat-1@example.com","y":1}}')
    assert _body(text) == (
        '{\n\t"jsonrpc":\t"2.0",\n\t"result":\t{\n'
        '\t\t"room":\t"sip:chat-1@example.com",\n'
        '\t\t"members":\t["sip:alice@example.com", "sip:carol@example.com", '
        '"sip:bob@example.com"],\n'
        '\t\t"count":\t3\n\t}\n}'
    )


def test_fault_shapes_and_http_status() -> None:
    status, reason, body = _json(b'{"jsonrpc":"2.0","method":"nope.x","id":1.5}')
    assert (status, reason) == (500, "Method Not Found")
    assert body == (b'{\n\t"jsonrpc":\t"2.0",\n\t"error":\t{\n\t\t"code":\t500,\n'
                    b'\t\t"message":\t"Method Not Found"\n\t},\n\t"id":\t1.500000\n}')
    text = b'{"jsonrpc":"2.0","method":"imc.list_members","params":["sip:no@example.com"],"id":"a"}'
    assert _json(text)[:2] == (500, "Room not found")
    status, reason, body = _json(b'{"jsonrpc":"2.0","method":"stats.fetch","id":3}')
    assert (status, reason) == (400, "Please provide which stats to retrieve")
    assert body is not None and b'"code":\t400,' in body


@pytest.mark.parametrize(("text", "expected"), [
    (b'{"method":"core.version","id":1}', '{\n\t}'),  # no "jsonrpc": no call, {} result
    (b'{"jsonrpc":"2.0","method":5,"id":1}', '{\n\t}'),
    (b'{"jsonrpc":"2.0","id":1}', '{\n\t}'),
    (b'{"jsonrpc":2.0,"method":"core.version","id":1}', '{\n\t}'),  # Kamailio crashes here
    (b'{"jsonrpc":"2.0","method":"imc.list_members","params":"sip:chat-1@example.com","id":1}',
     '{\n\t}'),  # params neither array nor object
    (b'{"jsonrpc":"2.0","method":"imc.list_members","params":5,"id":1}', '{\n\t}'),
    (b'{"jsonrpc":"2.0","method":"stats.reset_statistics","params":["nope"],"id":1}',
     '{\n\t}'),  # nothing added by a non-array method
    (b'{"jsonrpc":"2.0","method":"stats.get_statistics","params":["nope"],"id":1}', '[]'),
])
def test_quirk_results(text: bytes, expected: str) -> None:
    assert _json(text) == (
        200, "OK", f'{{\n\t"jsonrpc":\t"2.0",\n\t"result":\t{expected},\n\t"id":\t1\n}}'.encode()
    )


def test_unknown_method_wins_over_bad_params() -> None:
    assert _json(b'{"jsonrpc":"2.0","method":"nope","params":5,"id":1}')[:2] == (
        500, "Method Not Found"
    )


def test_batch_or_scalar_root_gets_an_empty_result_without_id() -> None:
    empty = b'{\n\t"jsonrpc":\t"2.0",\n\t"result":\t{\n\t}\n}'
    assert _json(b'[{"jsonrpc":"2.0","method":"core.version","id":1}]')[2] == empty
    assert _json(b'"core.version"')[2] == empty


@pytest.mark.parametrize(("raw", "shown"), [
    (b'1', '1'), (b'-5', '-5'), (b'12345678901', '12345678901'),
    (b'2147483648', '2147483648'), (b'1e20', '100000000000000000000'),
    (b'1.5', '1.500000'), (b'-0.5', '-0.500000'), (b'0.0000001', '1.000000e-07'),
    (b'1e300', '1.000000e+300'),  # Kamailio 5.6.3 crashes on this one
    (b'true', '1'), (b'false', '0'), (b'null', '0'), (b'{"a":1}', '0'), (b'[]', '0'),
    (b'"a\\"b\\u00e9\\/\\n"', '"a\\"b\u00e9/\\n"'),
    (b'"\\u0000a\\ud800b"', '"ab"'),  # srjson drops NUL and unpaired surrogates
])
def test_id_echo(raw: bytes, shown: str) -> None:
    body = _body(b'{"jsonrpc":"2.0","method":"core.prints","params":["x"],"id":' + raw + b'}')
    assert body.endswith(f'\n\t"id":\t{shown}\n}}')


def test_member_lookup_is_case_insensitive_first_wins_trailing_ignored() -> None:
    body = _body(b'{"JSONRPC":"2.0","Method":"core.prints","params":["x"],"ID":7}')
    assert body.endswith('"result":\t["x"],\n\t"id":\t7\n}')
    body = _body(b'{"jsonrpc":"2.0","method":"core.prints","method":"nope","params":["x"],'
                 b'"id":1,"id":2} trailing words')
    assert body.endswith('"result":\t["x"],\n\t"id":\t1\n}')


def test_object_params_keep_duplicates_in_order() -> None:
    body = _body(b'{"jsonrpc":"2.0","method":"core.echo","params":{"a":"1","a":"2"},"id":1}')
    assert '"result":\t["1", "2"]' in body


def test_strings_escaped_as_cjson_does() -> None:
    body = _body(b'{"jsonrpc":"2.0","method":"core.echo","params":["\\u0001x\\ty/\\u00e9"]}')
    assert '"result":\t["\\u0001x\\ty/\u00e9"]' in body


def test_parse_errors_get_a_reply() -> None:
    expected = (b'{\n\t"jsonrpc":\t"2.0",\n\t"error":\t{\n\t\t"code":\t-32700,\n'
                b'\t\t"message":\t"Parse Error"\n\t}\n}')
    for junk in (b"garbage", b"{", b'{"jsonrpc":"2.0",}', b"\xff\xfe\x00\x01", b"NaN",
                 b"[" * 100_000, b'{"a":' * 50_000):
        assert _json(junk) == (400, "Parse Error", expected)


def test_blank_input_has_no_reply() -> None:
    assert _json(b"") == (400, "Empty Request", None)
    assert _json(b" \r\n\t") == (400, "Empty Request", None)


def test_raw_utf8_and_invalid_bytes_survive() -> None:
    body = _json(b'{"jsonrpc":"2.0","method":"core.prints","params":["\xc3\xa9\xff"],"id":1}')[2]
    assert body is not None and b'["\xc3\xa9\xff"]' in body


def test_wrong_param_types_are_faults_not_crashes() -> None:
    for params in (b'[[1,2]]', b'[{"a":1}]', b'[1e999]', b'[-1]', b'[true]', b'[null]'):
        for method in REGISTRY.names():
            text = b'{"jsonrpc":"2.0","method":"' + method.encode() + b'","params":' + params + b'}'
            status, _reason, body = _json(text)
            assert body is not None and status in (200, 400, 500)


def test_failing_handler_is_an_internal_error() -> None:
    def boom(context: object, params: object) -> RpcReply:
        raise RuntimeError("secret detail")

    registry = Registry()
    registry.register(RpcMethod("x.boom", boom, "fails"))
    status, reason, body = _json(b'{"jsonrpc":"2.0","method":"x.boom","id":1}',
                                 registry=registry)
    assert (status, reason) == (500, "Internal Error")
    assert body is not None and b"-32603" in body and b"secret" not in body


def test_long_fault_text_is_cut_like_kamailio() -> None:
    def long_fault(context: object, params: object) -> RpcReply:
        from imc_sidecar.rpc.registry import RpcFault
        raise RpcFault(500, "x" * 300 + "\r\n")

    registry = Registry()
    registry.register(RpcMethod("x.long", long_fault, ""))
    status, reason, body = _json(b'{"jsonrpc":"2.0","method":"x.long"}', registry=registry)
    assert (status, reason) == (500, "x" * 127)
    assert body is not None and b'"' + b"x" * 127 + b'"' in body


def test_numbers_and_big_counters() -> None:
    value = RpcStruct(a=2**31 - 1, b=2**31, c=2**64 + 1, d=0.25, e=True, f=None)
    assert render({"r": value}) == (
        b'{\n\t"r":\t{\n\t\t"a":\t2147483647,\n\t\t"b":\t2147483648,\n'
        b'\t\t"c":\t18446744073709551616,\n\t\t"d":\t0.250000,\n\t\t"e":\ttrue,\n'
        b'\t\t"f":\tnull\n\t}\n}'
    )


def test_helpers_for_transports() -> None:
    assert string_member(b'{"reply_name":"r1","jsonrpc":"2.0"}', "reply_name") == "r1"
    assert string_member(b'{"reply_name":5}', "reply_name") is None
    assert string_member(b"junk", "reply_name") is None
    assert fault_body(413, "Request too large") == (
        b'{\n\t"jsonrpc":\t"2.0",\n\t"error":\t{\n\t\t"code":\t413,\n'
        b'\t\t"message":\t"Request too large"\n\t}\n}'
    )
