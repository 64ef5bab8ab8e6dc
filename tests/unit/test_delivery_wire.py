"""The records the sidecar and its delivery workers exchange."""

from __future__ import annotations

import marshal

import pytest

from imc_sidecar.delivery.wire import (
    Hello,
    Job,
    Report,
    WireError,
    decode_hello,
    decode_job,
    decode_report,
    encode_hello,
    encode_job,
    encode_report,
)


def test_job_round_trip_from_a_memoryview() -> None:
    record = encode_job(7, "sip:chat-1@d", b"\x00body%s", b"X-A: 1\r\n", ("sip:a@h", "sip:b@h"))
    buffer = bytearray(record) + b"garbage after the record"
    assert decode_job(memoryview(buffer)[: len(record)]) == Job(
        7, "sip:chat-1@d", b"\x00body%s", b"X-A: 1\r\n", ("sip:a@h", "sip:b@h")
    )


def test_report_and_hello_round_trip() -> None:
    finished = [(5, 2, 1, 486, "Busy Here", 1234.5)]
    report = decode_report(encode_report(3, [(408, "Request Timeout")], finished))
    assert report == Report(3, [(408, "Request Timeout")], finished)
    # The token's copies were counted one by one as they ended: finished only sums up.
    assert report.copies == 3 + 1
    assert decode_hello(encode_hello("127.0.0.1", 40000)) == Hello("127.0.0.1", 40000)


@pytest.mark.parametrize(
    "record",
    [b"", b"\x00\x01", marshal.dumps((1, 2)), marshal.dumps(("x", "sip:r", b"", b"", ()))],
)
def test_bad_job_records_raise_wire_error(record: bytes) -> None:
    with pytest.raises(WireError):
        decode_job(record)


@pytest.mark.parametrize(
    "record",
    [b"", marshal.dumps([1, 2]), marshal.dumps(("1", [], [])), marshal.dumps((1, [], 2))],
)
def test_bad_report_records_raise_wire_error(record: bytes) -> None:
    with pytest.raises(WireError):
        decode_report(record)


def test_hello_from_something_else_is_refused() -> None:
    with pytest.raises(WireError):
        decode_hello(marshal.dumps(("other/1", "h", 1)))
