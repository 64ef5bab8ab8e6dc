"""What the sidecar does beyond Kamailio 5.6.3, with sipp phones behind the front Kamailio.

5.6.3 has no `#modify` and gets B11/B16 wrong, so the differential test cannot compare
these; they are checked here against the documented intent (imc-reference.md §4.12,
§14.36, B2, B3, B11, B16).
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from .conversation import (
    ADD_DENIED,
    CREATED,
    Phase,
    Step,
    each,
    expectation_mismatches,
    joined,
    not_registered,
    only,
    record,
    refused,
    room,
    sidecar_system,
)

pytestmark = pytest.mark.e2e

C1, C2 = room("chat-1"), room("chat-2")
MODIFY_DENIED = "*** You don't have the permmission to modify members in this room"

_STEPS = [
    Step("create", "alice", C1, "#create", "§4.1", expect=only("alice", CREATED)),
    Step("join", "bob", C1, "#join", "§4.2", expect=each(joined("bob"), "alice", "bob")),
    Step("join-2", "carol", C1, "#join", "§4.2",
         expect=each(joined("carol"), "alice", "carol", "bob")),
    # §14.36: the owner makes bob an admin; the broadcast names the full stored URI.
    Step("modify-admin", "alice", C1, "#modify bob admin", "§4.12",
         expect=each("*** sip:bob@imc.test is now admin", "alice", "carol", "bob")),
    Step("members-shows-admin", "carol", C1, "#members", "§4.10",
         expect=only("carol", "Members:\n*[alice]\n[carol]\n~[bob]")),
    Step("modify-denied", "carol", C1, "#modify carol owner", "§4.12",
         expect=only("carol", MODIFY_DENIED)),
    refused("modify-unknown-role", "alice", C1, "#modify bob king", "§4.12"),
    # B2: a non-member target crashes master; here it is refused and nothing changes.
    refused("modify-non-member", "alice", C1, "#modify dave admin", "B2"),
    Step("still-serving", "bob", C1, "still here", "B2",
         expect=each("[bob]: still here", "alice", "carol")),
    # B3: the room is the 3rd token (master reads the 4th).
    Step("create-2", "alice", C2, "#create", "§4.1", expect=only("alice", CREATED)),
    Step("add-dave-2", "alice", C2, "#add dave", "§4.4",
         expect=each(joined("dave"), "alice", "dave")),
    Step("modify-other-room", "alice", C1, "#modify dave admin chat-2", "B3",
         expect=each("*** sip:dave@imc.test is now admin", "alice", "dave")),
    Step("admin-adds", "dave", C2, "#add erin", "§4.4",
         expect=each(joined("erin"), "alice", "erin", "dave")),
    Step("plain-member-add-denied", "erin", C2, "#add fred", "§4.4",
         expect=only("erin", ADD_DENIED)),
    # B16: an invitee's #join counts as #accept and is announced.
    Step("invite-fred", "alice", C2, "#invite fred", "§4.3",
         expect=only("fred", "*** [alice] invites you to join the room "
                             "(send '#accept' or '#reject')")),
    Step("invitee-join", "fred", C2, "#join", "B16",
         expect=each(joined("fred"), "alice", "fred", "erin", "dave")),
    # B11: ghost is not registered (the front answers 404): the failure notice goes to
    # the inviter, not to the unreachable invitee.
    Step("invite-ghost", "alice", C2, "#invite ghost", "B11",
         expect=only("alice", not_registered("ghost"))),
    Step("ghost-gone", "alice", C2, "#members", "B10",
         expect=only("alice", "Members:\n*[alice]\n[fred]\n[erin]\n~[dave]")),
]  # fmt: skip

SIDECAR_ONLY = Phase("sidecar-only", tuple(_STEPS))


@pytest.mark.parametrize("delivery_workers", [0, 2])
def test_sidecar_features_beyond_kamailio_56(tmp_path: Path, delivery_workers: int) -> None:
    """Also with delivery workers: the front must take their ports as the sidecar's."""
    system = functools.partial(sidecar_system, delivery_workers=delivery_workers)
    transcript = record(system, tmp_path, SIDECAR_ONLY)
    # Workers send a fan-out's copies side by side: each member's order is what counts.
    problems = expectation_mismatches(transcript.results, across_members=not delivery_workers)
    assert not problems, "\n".join(problems) + "\n\n" + transcript.text()
    assert transcript.exit_codes["imc-sidecar"] == 0
    # Every copy, and the one attempt on unregistered ghost, took the front's room route.
    front_log = (tmp_path / "front" / "sidecar-front.log").read_text()
    delivered = sum(len(result.deliveries) for result in transcript.results)
    assert front_log.count("room traffic from the sidecar") == delivered + 1
