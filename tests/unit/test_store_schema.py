"""check_fits: what cannot be stored without truncation is caught before any write."""

from __future__ import annotations

import pytest

from imc_sidecar.imc.changes import (
    Change,
    MemberAdded,
    MemberFlagsChanged,
    MemberRemoved,
    RoomCreated,
    RoomDestroyed,
)
from imc_sidecar.store.schema import check_fits

D = "example.com"
ROOM_64 = "r" * (64 - len(f"sip:@{D}"))  # sip:<name>@example.com is exactly 64 characters


@pytest.mark.parametrize(
    "change",
    [
        RoomCreated(ROOM_64, D, 1),
        MemberAdded(f"sip:{ROOM_64}@{D}", "u" * 64, "d" * 64, 4),
        MemberFlagsChanged(f"sip:{ROOM_64}@{D}", "u", D, 2**31 - 1),
        RoomDestroyed("x" * 300, D),  # deletions never need to fit
        MemberRemoved("sip:" + "x" * 300, "u" * 300, D),
        RoomCreated("ünïcödé" * 5, D, 0),  # characters, not bytes, are counted
    ],
)
def test_fits(change: Change) -> None:
    assert check_fits(change) is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (RoomCreated(ROOM_64 + "x", D, 0), "room URI is 65 characters long"),
        (RoomCreated("n" * 65, "d", 0), "room name is 65 characters long"),
        (RoomCreated("n", "d" * 65, 0), "room domain is 65 characters long"),
        (MemberAdded("sip:" + "r" * 61, "u", D, 0), "room URI is 65 characters long"),
        (MemberAdded(f"sip:r@{D}", "u" * 65, D, 0), "member user is 65 characters long"),
        (MemberFlagsChanged(f"sip:r@{D}", "u", "d" * 65, 0), "member domain is 65"),
        (MemberAdded(f"sip:r@{D}", "u\x00", D, 0), "member user contains a NUL"),
        (RoomCreated("r", D, 2**31), "flags value 2147483648 does not fit"),
    ],
)
def test_does_not_fit(change: Change, message: str) -> None:
    problem = check_fits(change)
    assert problem is not None and problem.startswith(message)
