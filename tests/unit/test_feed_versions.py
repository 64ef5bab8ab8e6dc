"""Room versions (feed/versions.py): what a write claims, when a feed row is news."""

from __future__ import annotations

from imc_sidecar.feed.versions import RoomVersions, rooms_touched
from imc_sidecar.imc.changes import MemberAdded, MemberRemoved, RoomCreated, RoomDestroyed


def test_rooms_touched_are_lower_case_uris_once_each() -> None:
    changes = [
        RoomCreated("Chat", "Example.com", 0),
        MemberAdded("sip:Chat@Example.com", "alice", "example.com", 1),
        MemberRemoved("sip:other@example.com", "bob", "example.com"),
    ]
    assert rooms_touched(changes) == ["sip:chat@example.com", "sip:other@example.com"]


def test_claims_follow_each_other_on_one_room() -> None:
    versions = RoomVersions({"sip:a@x": 4})
    first = versions.claim([MemberAdded("sip:a@x", "u", "x", 0)])
    second = versions.claim([MemberRemoved("sip:a@x", "u", "x")])
    new_room = versions.claim([RoomCreated("b", "x", 0)])
    assert first == (("sip:a@x", 4),)
    assert second == (("sip:a@x", 5),)
    assert new_room == (("sip:b@x", 0),)
    assert versions.known("sip:a@x") == 6


def test_a_room_is_busy_until_every_write_to_it_settles() -> None:
    versions = RoomVersions()
    first = versions.claim([RoomCreated("a", "x", 0)])
    second = versions.claim([RoomDestroyed("a", "x")])
    versions.settled(first)
    assert versions.busy("sip:a@x")
    versions.settled(second)
    assert not versions.busy("sip:a@x")
    versions.settled(second)  # one settled against reloaded versions: no error
    assert not versions.busy("sip:a@x")


def test_a_feed_row_is_news_only_above_the_known_version() -> None:
    versions = RoomVersions({"sip:a@x": 3})
    assert not versions.is_news("sip:a@x", 3)
    assert versions.is_news("sip:a@x", 4)
    assert versions.is_news("sip:new@x", 1)
    versions.read("sip:a@x", 7)
    assert not versions.is_news("sip:a@x", 7)


def test_a_read_does_not_lower_a_version_claimed_in_flight() -> None:
    versions = RoomVersions({"sip:a@x": 3})
    versions.claim([MemberAdded("sip:a@x", "u", "x", 0)])  # in flight: known 4
    versions.read("sip:a@x", 3)
    assert versions.known("sip:a@x") == 4
