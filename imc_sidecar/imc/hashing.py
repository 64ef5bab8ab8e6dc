"""Kamailio's `core_case_hash` (src/core/hashes.h), which orders imc's room table.

The order of `#rooms` and `imc.list_rooms` is observable, so the bucket of every room must
be the one Kamailio 5.6 on x86-64 computes.  Bytes >= 0x80 take part as *signed* chars
there (gcc's `char`), and all arithmetic wraps at 32 bits.
"""

from __future__ import annotations

__all__ = ["bucket_index", "core_case_hash"]

_MASK = 0xFFFFFFFF
# Only ASCII letters fold, as with Kamailio's `ch_icase`; bytes.lower() does exactly that.


def _signed(byte: int) -> int:
    return byte - 256 if byte >= 0x80 else byte


def _mix(h: int, v: int) -> int:
    v &= _MASK
    return (h + (v ^ (v >> 3))) & _MASK


def _hash_part(h: int, data: bytes) -> int:
    folded = data.lower()
    full = len(folded) - len(folded) % 4
    for i in range(0, full, 4):
        v = (
            (_signed(folded[i]) << 24)
            + (_signed(folded[i + 1]) << 16)
            + (_signed(folded[i + 2]) << 8)
            + _signed(folded[i + 3])
        )
        h = _mix(h, v)
    # The 0-3 leftover bytes form one more word (0 when there are none).
    v = 0
    for byte in folded[full:]:
        v = ((v << 8) + _signed(byte)) & _MASK
    return _mix(h, v)


def core_case_hash(first: str | bytes, second: str | bytes | None = None) -> int:
    """The 32-bit hash over one or two strings (str is hashed as its UTF-8 bytes)."""
    h = _hash_part(0, first.encode() if isinstance(first, str) else first)
    if second is not None:
        h = _hash_part(h, second.encode() if isinstance(second, str) else second)
    return (h + (h >> 11) + (h >> 13) + (h >> 23)) & _MASK


def bucket_index(name: str, domain: str, hash_size: int) -> int:
    """The bucket of a room in a table of 2**hash_size buckets (hash_size is an exponent)."""
    return core_case_hash(name, domain) & ((1 << hash_size) - 1)
