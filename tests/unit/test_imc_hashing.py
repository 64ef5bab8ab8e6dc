"""core_case_hash against values computed by the same arithmetic compiled with gcc (x86-64)."""

from __future__ import annotations

import pytest

from imc_sidecar.imc.hashing import bucket_index, core_case_hash


@pytest.mark.parametrize(
    ("name", "domain", "expected"),
    [
        (b"chat-X", b"127.0.0.5", 3697830656),
        (b"chat-1", b"d", 1863774229),
        (b"Room-42", b"d", 2086568526),
        # Bytes >= 0x80 count as signed chars, as gcc's `char` on x86.
        (b"\xc3\xa9t\xc3\xa9", b"example.com", 2747157092),
        (b"\xff\xfe\x80", b"x.y", 3768279665),
    ],
)
def test_matches_kamailio(name: bytes, domain: bytes, expected: int) -> None:
    assert core_case_hash(name, domain) == expected


def test_str_is_hashed_as_utf8() -> None:
    assert core_case_hash("été", "example.com") == 2747157092


def test_ascii_case_is_ignored() -> None:
    assert core_case_hash("CHAT-x", "D.Example") == core_case_hash("chat-X", "d.example")


def test_non_ascii_case_is_not_folded() -> None:
    assert core_case_hash("É", "d") != core_case_hash("é", "d")


def test_empty_second_string_adds_nothing() -> None:
    assert core_case_hash("abc") == core_case_hash("abc", "")
    assert 0 <= core_case_hash("abc") < 2**32


def test_bucket_is_low_bits_of_hash() -> None:
    assert bucket_index("chat-X", "127.0.0.5", 4) == 3697830656 & 15
    assert bucket_index("chat-1", "d", 10) == 1863774229 & 1023


def test_live_rooms_order_is_bucket_order() -> None:
    # 5.6.3 listed `[chat-X]`, `[chat-1]`, `[chat-pre]`, `[chat-y]` on 127.0.0.5 (16 buckets).
    names = ["chat-X", "chat-1", "chat-pre", "chat-y"]
    buckets = [bucket_index(name, "127.0.0.5", 4) for name in names]
    assert buckets == sorted(buckets)
