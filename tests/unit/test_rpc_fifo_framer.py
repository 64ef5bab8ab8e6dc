"""The FIFO transport's framing (kamctl writes JSON documents back to back), pure."""

from __future__ import annotations

from imc_sidecar.rpc.fifo import DocumentFramer


def test_framer_splits_on_balanced_braces_outside_strings() -> None:
    framer = DocumentFramer()
    assert framer.feed(b'{"a": "}{\\"}", "b": {"c": 1}}\n{"d"') == [
        b'{"a": "}{\\"}", "b": {"c": 1}}'
    ]
    assert framer.feed(b': 2}\r\n') == [b'{"d": 2}']
    # kamctl monitor writes multi-line documents; bytes arrive one at a time here
    text = b'{\n  "jsonrpc": "2.0",\n  "method": "core.uptime"\n}\n'
    out: list[bytes] = []
    for byte in text:
        out += framer.feed(bytes([byte]))
    assert out == [text.strip()]


def test_framer_skips_an_oversized_document_and_stays_in_step() -> None:
    framer = DocumentFramer(limit=64)
    assert framer.feed(b'{"big": "' + b"x" * 100) == []
    assert framer.feed(b'", "more": {"y": 1}}{"ok": 1}') == [b'{"ok": 1}']
    assert framer.feed(b"}}}" + b"j" * 100 + b'{"ok": 2}') == [b'{"ok": 2}']
