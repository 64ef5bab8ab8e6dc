"""The scripted conversation of the differential test (reference §14 items 1-34).

A conversation is a list of :class:`Step` s.  Each step is one MESSAGE that one user sends
to one R-URI; :func:`run_conversation` sends it through a system (the reference Kamailio
with imc, or the front Kamailio + imc_sidecar), waits until the traffic settles and records
a :class:`StepResult`: the final reply and, in arrival order, every MESSAGE any user
received (From, To, body, Content-Type, Supported, whether In-Reply-To names the step's
Call-ID, and any ``X-`` headers).  Call-IDs, tags and branches are not recorded.

Two phases, each against a freshly started system:

* :data:`MAIN` -- the default imc settings (``create_on_join=1``, ``check_on_create=0``,
  start character ``#``);
* :data:`VARIANT` -- ``create_on_join=0``, ``check_on_create=1``, start character ``/``
  and ``extra_hdrs`` (reference §4.1, §4.2, §4.3, §4.13, §4.14, B20).

Steps carry what the reference documentation says should happen (``status`` and, where
given, ``expect`` = the ordered ``(recipient, body)`` deliveries).  The reference test
checks those against the real Kamailio; the differential test compares the two systems'
transcripts with each other.

Users: alice, bob, carol, dave, erin, fred (phones answer 200), ``zombie`` (registered, its
phone answers every MESSAGE with 404) and ``ghost`` (never registers: 404 from
``lookup("location")``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .harness.kamailio import Kamailio, imc_reference, sidecar_front
from .harness.sipua import SipMessage, UserAgents, free_port, free_udp_run, uri_user
from .sidecar_process import SidecarProcess

DOMAIN = "imc.test"
MANAGER = f"sip:chat-manager@{DOMAIN}"

#: Seconds without any new MESSAGE after which a step counts as settled.
QUIET = float(os.environ.get("IMC_E2E_QUIET", "0.15"))
#: Upper bound for one step's settling.
SETTLE_TIMEOUT = 5.0


def room(name: str) -> str:
    return f"sip:{name}@{DOMAIN}"


def aor(user: str) -> str:
    return f"sip:{user}@{DOMAIN}"


@dataclass(frozen=True)
class UserSpec:
    name: str
    status: int = 200
    reason: str = "OK"
    register: bool = True


USERS: tuple[UserSpec, ...] = (
    UserSpec("alice"),
    UserSpec("bob"),
    UserSpec("carol"),
    UserSpec("dave"),
    UserSpec("erin"),
    UserSpec("fred"),
    UserSpec("zombie", status=404, reason="Not Found"),
    UserSpec("ghost", register=False),
)

Expect = tuple[str, str]  # (recipient, body)


@dataclass(frozen=True)
class Step:
    """One MESSAGE: ``sender`` sends ``body`` to ``ruri``."""

    id: str
    sender: str
    ruri: str
    body: str
    ref: str  # where imc-reference.md describes it
    status: int = 200  # what the documented cfg answers (200 if imc_manager() > 0, else 500)
    expect: tuple[Expect, ...] | None = None  # ordered deliveries; None = not specified
    from_uri: str | None = None  # default: the sender's AoR
    to_uri: str | None = None  # default: the R-URI
    content_type: str | None = "text/plain"
    content_length: int | Literal["auto"] | None = "auto"
    note: str = ""


@dataclass(frozen=True)
class Phase:
    """A conversation run against one freshly started system with these imc settings."""

    name: str
    steps: tuple[Step, ...]
    create_on_join: int = 1
    check_on_create: int = 0
    cmd_start_char: str = "#"
    extra_hdrs: str | None = None
    users: tuple[UserSpec, ...] = USERS


@dataclass(frozen=True)
class Delivery:
    """One MESSAGE received by a user during a step."""

    recipient: str
    from_uri: str
    to_uri: str
    body: str
    content_type: str | None
    supported: str | None
    in_reply_to: str  # "step" (the step's Call-ID), "none", or "other:<value>"
    extra_headers: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        hdrs = f" ct={self.content_type!r} sup={self.supported!r} irt={self.in_reply_to}"
        if self.extra_headers:
            hdrs += f" x={list(self.extra_headers)!r}"
        body = self.body if len(self.body) <= 240 else f"{self.body[:200]}...({len(self.body)})"
        return (
            f"-> {self.recipient}: From <{self.from_uri}> To <{self.to_uri}>{hdrs}\n"
            f"     body {body!r}"
        )


@dataclass(frozen=True)
class StepResult:
    step: Step
    status: int
    reason: str
    call_id: str
    deliveries: tuple[Delivery, ...]
    settled: bool = True
    sent_body: bytes = b""

    def describe(self) -> str:
        s = self.step
        lines = [
            f"[{s.id}] {s.sender} -> {s.ruri}: {s.body[:70]!r}  => {self.status} {self.reason}"
            + ("" if self.settled else "  (traffic did not settle!)")
        ]
        lines += ["   " + d.describe() for d in self.deliveries]
        return "\n".join(lines)


def make_delivery(recipient: str, msg: SipMessage, step_call_id: str) -> Delivery:
    irt = msg.in_reply_to
    if irt is None:
        relation = "none"
    elif irt.strip() == step_call_id:
        relation = "step"
    else:
        relation = f"other:{irt.strip()}"
    extra = tuple((n, v) for n, v in msg.headers if n.lower().startswith("x-"))
    return Delivery(
        recipient=recipient,
        from_uri=msg.from_uri,
        to_uri=msg.to_uri,
        body=msg.body.decode("utf-8", errors="replace"),
        content_type=msg.content_type,
        supported=msg.supported,
        in_reply_to=relation,
        extra_headers=extra,
    )


def make_user_agents(agents: UserAgents, users: Sequence[UserSpec]) -> UserAgents:
    for spec in users:
        agents.add_user(spec.name, status=spec.status, reason=spec.reason, register=spec.register)
    return agents


def run_step(agents: UserAgents, step: Step, phase: str, index: int) -> StepResult:
    mark = agents.mark()
    call_id = f"{phase}-{index:03d}-{uuid.uuid4().hex[:12]}@imc-e2e"
    reply = agents.send(
        step.sender,
        step.ruri,
        step.body,
        from_uri=step.from_uri,
        to_uri=step.to_uri,
        content_type=step.content_type,
        content_length=step.content_length,
        call_id=call_id,
    )
    settled = agents.settle(quiet=QUIET, timeout=SETTLE_TIMEOUT)
    deliveries = tuple(
        make_delivery(name, msg, call_id) for name, msg in agents.deliveries(since=mark)
    )
    return StepResult(
        step=step,
        status=reply.status,
        reason=reply.reason,
        call_id=call_id,
        deliveries=deliveries,
        settled=settled,
        sent_body=reply.request.body if reply.request else b"",
    )


def run_conversation(agents: UserAgents, phase: Phase) -> list[StepResult]:
    """Send every step of ``phase`` through ``agents`` (already started and registered)."""
    agents.settle(quiet=QUIET, timeout=SETTLE_TIMEOUT)
    return [run_step(agents, step, phase.name, i) for i, step in enumerate(phase.steps, 1)]


def transcript_text(results: Sequence[StepResult]) -> str:
    return "\n".join(r.describe() for r in results)


def expectation_mismatches(
    results: Sequence[StepResult], *, across_members: bool = True
) -> list[str]:
    """Where a transcript disagrees with the documented ``status``/``expect`` of its steps.

    ``across_members`` False compares each member's deliveries in order but not how
    different members' copies interleave (several processes send them).
    """
    problems: list[str] = []
    for r in results:
        s = r.step
        if r.status != s.status:
            problems.append(f"[{s.id}] status {r.status} {r.reason!r}, documented {s.status}")
        if s.expect is not None:
            got = [(d.recipient, d.body) for d in r.deliveries]
            expected = list(s.expect)
            if not across_members:
                got, expected = _per_member(got), _per_member(expected)
            if got != expected:
                problems.append(
                    f"[{s.id}] deliveries differ from the documentation ({s.ref}):\n"
                    f"    documented {list(s.expect)!r}\n    observed   {got!r}"
                )
        if not r.settled:
            problems.append(f"[{s.id}] traffic did not settle within {SETTLE_TIMEOUT}s")
    return problems


def _per_member(deliveries: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Deliveries grouped by member (stable: each member's own order is kept)."""
    return sorted(deliveries, key=lambda delivery: delivery[0])


# --------------------------------------------------------------------------- texts

HELP_56 = (
    "\r\n"
    "#create <room_name> - create new conference room\r\n"
    "#join [<room_name>] - join the conference room\r\n"
    "#invite <user_name> [<room_name>] - invite a user to join a conference room\r\n"
    "#add <user_name> [<room_name>] - add a user to a conference room\r\n"
    "#accept - accept invitation to join a conference room\r\n"
    "#reject - reject invitation to join a conference room\r\n"
    "#remove <user_name> [<room_name>] - remove a user from the conference room\r\n"
    "#members - list members is a conference room\r\n"
    "#rooms - list existing conference rooms\r\n"
    "#leave [<room_name>] - leave from a conference room\r\n"
    "#destroy [<room_name>] - destroy conference room\r\n"
)


def joined(user: str) -> str:
    return f"*** [{user}] has joined the room"


def left(user: str) -> str:
    return f"*** [{user}] has left the room"


def invites(inviter: str, start: str = "#") -> str:
    return f"*** [{inviter}] invites you to join the room (send '{start}accept' or '{start}reject')"


CREATED = "*** Room was created"
OWNER_CANNOT_LEAVE = (
    "*** You are the room's owner and cannot leave. Use #destroy if you wish to destroy the room."
)
PRIVATE_ONLY = "*** Private rooms are by invitation only. Room owners have been notified."
ADD_DENIED = "*** You don't have the permmission to add members to this room"
REMOVED = "*** You have been removed from the room"
DESTROYED = "*** Room has been destroyed"
ALREADY_IN = "*** You are in the room already"
EXISTS_MEMBER = "*** Room already exists and you are a member"
EXISTS_PRIVATE = "*** A private room with the same name already exists"
EXISTS = "*** Room already exists"
NOT_FOUND = "*** Room not found"


def invalid(cmd: str, start: str = "#") -> str:
    return f"*** Invalid command '{cmd}' (send '{start}help' for help)"


def not_registered(user: str) -> str:
    return f"{user}@{DOMAIN} is not registered. "


LONG_OK = "x" * (32767 - len("[alice]: "))  # fan-out text of 32767 bytes: delivered
LONG_TOO_LONG = "y" * (32768 - len("[alice]: "))  # 32768 bytes: -200, nothing delivered
UTF8 = "Grüße aus Köln, привет, 你好, ✓ and 🎉"

C1, CP, CY, CX = room("chat-1"), room("chat-p"), room("chat-y"), room("chat-X")
MEMBERS_1 = "Members:\n*[alice]\n[carol]\n[bob]"


def each(body: str, *users: str) -> tuple[Expect, ...]:
    """The same body delivered to ``users`` in this order."""
    return tuple((u, body) for u in users)


def only(user: str, body: str) -> tuple[Expect, ...]:
    return ((user, body),)


def refused(id: str, sender: str, ruri: str, body: str, ref: str, **kw: object) -> Step:
    """A step that imc_manager() fails (rc < 0): 500 and nothing is sent to anyone."""
    return Step(id, sender, ruri, body, ref, status=500, expect=(), **kw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- main phase

_MAIN: list[Step] = [
    # -- §14.1-9: create, join, chat, lists, parse errors, help
    Step("create", "alice", C1, "#create", "§14.1", expect=only("alice", CREATED)),
    Step("join", "bob", C1, "#join", "§14.2", expect=each(joined("bob"), "alice", "bob")),
    Step("join-via-manager", "carol", MANAGER, "#join chat-1", "§14.3",
         expect=each(joined("carol"), "alice", "carol", "bob")),
    Step("chat-fanout", "alice", C1, "hello all", "§14.4",
         expect=each("[alice]: hello all", "carol", "bob")),
    Step("members", "bob", C1, "#members", "§14.5", expect=only("bob", MEMBERS_1)),
    Step("list-alias", "bob", C1, "#list", "§14.5", expect=only("bob", MEMBERS_1)),
    Step("rooms", "alice", MANAGER, "#rooms", "§14.6", expect=only("alice", "Rooms:\n[chat-1]")),
    Step("unknown-command", "alice", C1, "#foo bar", "§14.7",
         expect=only("alice", invalid("foo"))),
    refused("hash-alone", "alice", C1, "#", "§14.8"),
    refused("hash-space", "alice", C1, "# create", "§14.8"),
    refused("hash-tab", "alice", C1, "#\tjoin", "§3"),
    Step("help", "alice", C1, "#help", "§14.9", expect=only("alice", HELP_56)),
    Step("help-uppercase-args", "dave", room("chat-nope"), "#HELP me please", "§4.13",
         expect=only("dave", HELP_56)),
    # -- §14.10-11: chat refused
    refused("nonmember-chat", "dave", C1, "hi", "§14.10"),
    refused("chat-missing-room", "alice", room("chat-nope"), "hi", "§14.11"),
    refused("chat-to-manager", "alice", MANAGER, "hi manager", "§1.7"),
    Step("unknown-nonmember-missing-room", "dave", room("chat-nope"), "#frobnicate x", "§4.14",
         expect=only("dave", invalid("frobnicate"))),
    refused("members-nonmember", "dave", C1, "#members", "§4.10"),
    Step("join-again", "bob", C1, "#join", "§4.2", expect=only("bob", ALREADY_IN)),
    # -- §14.12-13: leave
    Step("leave", "bob", C1, "#leave", "§14.12", expect=each(left("bob"), "alice", "carol", "bob")),
    Step("members-after-leave", "alice", C1, "#members", "§14.12",
         expect=only("alice", "Members:\n*[alice]\n[carol]")),
    refused("leave-nonmember", "bob", C1, "#leave", "§4.8"),
    Step("owner-cannot-leave", "alice", C1, "#leave", "§14.13",
         expect=only("alice", OWNER_CANNOT_LEAVE)),
    refused("accept-not-invited", "carol", C1, "#accept", "§4.5"),
    refused("reject-not-invited", "carol", C1, "#reject", "§4.6"),
    Step("join-back", "bob", C1, "#join", "§14.2",
         expect=each(joined("bob"), "alice", "bob", "carol")),
    # -- §14.14-18: private room, invitation, accept
    Step("create-private", "alice", MANAGER, "#create chat-p private", "§14.14",
         expect=only("alice", CREATED)),
    Step("join-private", "bob", CP, "#join", "§14.14",
         expect=(("bob", PRIVATE_ONLY), ("alice", "*** [bob] attempted to join the room"))),
    Step("invite", "alice", CP, "#invite bob", "§14.15", expect=only("bob", invites("alice"))),
    refused("invitee-chat", "bob", CP, "hello", "§14.16"),
    Step("invitee-members", "bob", CP, "#members", "§14.17",
         expect=only("bob", "Members:\n*[alice]")),
    Step("accept", "bob", CP, "#accept", "§14.18", expect=each(joined("bob"), "alice", "bob")),
    # -- §14.19: reject / deny
    Step("invite-with-domain", "alice", CP, f"#invite carol@{DOMAIN}", "§14.19",
         expect=only("carol", invites("alice"))),
    Step("reject", "carol", CP, "#reject", "§14.19", expect=()),
    Step("invite-dave", "alice", CP, "#invite dave", "§14.19",
         expect=only("dave", invites("alice"))),
    Step("deny-alias", "dave", CP, "#deny", "§14.19", expect=()),
    Step("members-after-reject", "alice", CP, "#members", "§14.19",
         expect=only("alice", "Members:\n*[alice]\n[bob]")),
    # -- §14.20: invitations that cannot be delivered (reference B11)
    Step("invite-ghost", "alice", CP, "#invite ghost", "§14.20", expect=(),
         note="ghost never registered: 404 from lookup(); imc sends the failure notice to "
         "ghost (B11), which fails again"),
    Step("invite-zombie", "alice", CP, "#invite zombie", "§14.20",
         note="zombie's phone answers 404; imc sends the failure notice to zombie (B11)",
         expect=(("zombie", invites("alice")), ("zombie", not_registered("zombie")))),
    Step("members-after-failed-invites", "alice", CP, "#members", "§14.20",
         expect=only("alice", "Members:\n*[alice]\n[bob]")),
    # -- §14.21: invite errors (all silent, -50)
    refused("invite-no-arg", "alice", CP, "#invite", "§14.21"),
    refused("invite-by-non-admin", "bob", CP, "#invite erin", "§14.21"),
    refused("invite-present", "alice", CP, "#invite bob", "§14.21"),
    refused("invite-by-nonmember", "dave", CP, "#invite erin", "§4.3"),
    refused("invite-missing-room", "alice", room("chat-nope"), "#invite erin", "§4.3"),
    # -- §14.22-24: add, remove
    Step("add-by-non-admin", "bob", CP, "#add erin", "§14.22", expect=only("bob", ADD_DENIED)),
    Step("add", "alice", CP, "#add erin", "§14.22",
         expect=each(joined("erin"), "alice", "erin", "bob")),
    refused("add-present", "alice", CP, "#add bob", "§4.4"),
    refused("add-no-arg", "alice", CP, "#add", "§4.4"),
    Step("remove", "alice", CP, "#remove erin", "§14.23",
         expect=(("erin", REMOVED), ("alice", left("erin")), ("bob", left("erin")))),
    refused("remove-by-member", "bob", CP, "#remove alice", "§14.24"),
    refused("remove-no-arg", "alice", CP, "#remove", "§14.24"),
    refused("remove-nonmember", "alice", CP, "#remove nobody", "§4.7"),
    refused("remove-owner-self", "alice", CP, "#remove alice", "§4.7"),
    # -- §14.25-27: #create on existing rooms, argument errors
    Step("create-existing-private", "carol", CP, "#create", "§14.25",
         expect=only("carol", EXISTS_PRIVATE)),
    Step("create-existing-private-member", "alice", CP, "#create", "§4.1",
         expect=only("alice", EXISTS_PRIVATE)),
    Step("create-existing-public-joins", "dave", C1, "#create", "§14.26",
         expect=each(joined("dave"), "alice", "dave", "bob", "carol")),
    Step("create-existing-public-member", "dave", C1, "#create", "§14.26",
         expect=only("dave", EXISTS_MEMBER)),
    refused("create-bad-arg", "alice", MANAGER, "#create chat-y nonsense", "§14.27"),
    Step("create-private-extra", "alice", MANAGER, "#create chat-y private extra", "§14.27",
         expect=only("alice", CREATED)),
    Step("create-named-public", "bob", MANAGER, f"#create sip:chat-b2@{DOMAIN}", "§2.1",
         expect=only("bob", CREATED)),
    # -- §14.28-30
    Step("join-creates", "erin", room("chat-new"), "#join", "§14.28", expect=only("erin", CREATED)),
    Step("invite-erin", "alice", CP, "#invite erin", "§14.29",
         expect=only("erin", invites("alice"))),
    Step("invitee-join", "erin", CP, "#join", "§14.29", expect=only("erin", ALREADY_IN)),
    Step("invitee-now-chats", "bob", CP, "hello from bob", "§14.29",
         expect=each("[bob]: hello from bob", "alice", "erin")),
    Step("invite-fred", "alice", CP, "#invite fred", "§14.30",
         expect=only("fred", invites("alice"))),
    Step("invitee-leaves", "fred", CP, "#leave", "§14.30",
         expect=each(left("fred"), "alice", "erin", "bob")),
    Step("invite-explicit-room", "alice", MANAGER, f"#invite sip:carol@{DOMAIN} chat-y", "§4.3",
         expect=only("carol", invites("alice"))),
    Step("accept-other-room", "carol", C1, "#accept chat-y", "§4.5",
         expect=each(joined("carol"), "alice", "carol")),
    Step("exit-alias", "carol", CY, "#exit", "§4.8", expect=each(left("carol"), "alice", "carol")),
    # -- §14.31: destroy
    refused("destroy-by-non-owner", "bob", CP, "#destroy", "§14.31"),
    Step("destroy", "alice", CP, "#destroy", "§14.31",
         expect=each(DESTROYED, "alice", "erin", "bob")),
    refused("chat-after-destroy", "alice", CP, "hi", "§14.31"),
    refused("destroy-missing", "alice", CP, "#destroy", "§14.31"),
    refused("destroy-nonmember", "dave", room("chat-new"), "#destroy", "§4.9"),
    # -- §14.32: case and URI normalisation
    Step("create-mixed-case", "alice", f"sip:chat-X@{DOMAIN}:5060;transport=udp", "#CREATE",
         "§14.32", from_uri=f"sip:Alice@{DOMAIN}:5070;transport=udp",
         expect=only("alice", CREATED)),
    Step("join-upper-room", "bob", f"sip:CHAT-x@{DOMAIN}", "#Join", "§14.32",
         expect=each(joined("bob"), "alice", "bob")),
    Step("create-lower-case", "alice", f"sip:chat-x@{DOMAIN}:5060;transport=udp", "#create",
         "§14.32", expect=only("alice", EXISTS_MEMBER)),
    Step("members-case", "bob", CX, "#MEMBERS", "§14.32",
         expect=only("bob", "Members:\n*[Alice]\n[bob]")),
    # -- §14.33: the To header is not read
    Step("to-header-ignored", "bob", room("chat-a"), "#join", "§14.33", to_uri=room("chat-b"),
         expect=only("bob", CREATED)),
    refused("to-header-ignored-check", "bob", room("chat-b"), "#members", "§14.33"),
    # -- §14.34: bodies
    refused("empty-body", "alice", C1, "", "§14.34"),
    refused("missing-content-length", "alice", C1, "#rooms", "§14.34", content_length=None),
    Step("multiline-command", "alice", CY, "#invite\tcarol\r\n#garbage and more", "§3",
         expect=only("carol", invites("alice"))),
    Step("multiline-chat", "alice", C1, "line one\r\nline two\r\n#not a command", "§5",
         expect=each("[alice]: line one\r\nline two\r\n#not a command", "dave", "bob", "carol")),
    Step("utf8-chat", "alice", C1, UTF8, "§5", content_type="text/plain;charset=UTF-8",
         expect=each(f"[alice]: {UTF8}", "dave", "bob", "carol")),
    Step("no-content-type", "bob", C1, "typeless", "§14.35", content_type=None,
         expect=each("[bob]: typeless", "alice", "dave", "carol")),
    Step("long-chat", "alice", C1, LONG_OK, "§14.34",
         expect=each(f"[alice]: {LONG_OK}", "dave", "bob", "carol")),
    refused("too-long-chat", "alice", C1, LONG_TOO_LONG, "§14.34"),
    Step("brackets-chat", "carol", C1, "[not] a [user]", "§5",
         expect=each("[carol]: [not] a [user]", "alice", "dave", "bob")),
    # -- the final state, as every user can see it
    Step("rooms-final", "dave", MANAGER, "#rooms", "§14.6",
         note="hash-bucket order, private rooms included (B18)"),
    Step("members-final", "alice", C1, "#list", "§4.10",
         expect=only("alice", "Members:\n*[alice]\n[dave]\n[bob]\n[carol]")),
]  # fmt: skip

MAIN = Phase("main", tuple(_MAIN))

# --------------------------------------------------------------------------- variant phase

CV = room("chat-v")
_EXTRA = "X-Imc-Test: variant\r\n"

_VARIANT: list[Step] = [
    Step("create", "alice", CV, "/create", "§4.1", expect=only("alice", CREATED)),
    Step("create-existing-check", "bob", CV, "/create", "§14.26", expect=only("bob", EXISTS)),
    Step("create-existing-owner", "alice", CV, "/create", "§4.1", expect=only("alice", EXISTS)),
    Step("join-missing-no-create", "bob", room("chat-none"), "/join", "§14.28",
         expect=only("bob", NOT_FOUND)),
    Step("join-missing-named", "bob", MANAGER, "/join chat-none", "§4.2",
         expect=only("bob", NOT_FOUND)),
    Step("join", "bob", CV, "/join", "§4.2", expect=each(joined("bob"), "alice", "bob")),
    Step("help-hardcoded-hash", "alice", CV, "/help", "§4.13", expect=only("alice", HELP_56)),
    Step("unknown", "alice", CV, "/bogus", "§4.14", expect=only("alice", invalid("bogus", "/"))),
    Step("hash-is-chat", "alice", CV, "#create", "§1", expect=only("bob", "[alice]: #create")),
    refused("slash-alone", "alice", CV, "/", "§1"),
    Step("owner-leave-hardcoded", "alice", CV, "/leave", "B20",
         expect=only("alice", OWNER_CANNOT_LEAVE)),
    Step("invite", "alice", CV, "/invite carol", "§4.3",
         expect=only("carol", invites("alice", "/"))),
    Step("invite-ghost", "alice", CV, "/invite ghost", "§14.20", expect=()),
    Step("invite-zombie", "alice", CV, "/invite zombie", "§14.20",
         expect=(("zombie", invites("alice", "/")), ("zombie", not_registered("zombie")))),
    Step("chat", "bob", CV, "hello variant", "§5", expect=only("alice", "[bob]: hello variant")),
    Step("rooms", "carol", MANAGER, "/rooms", "§4.11", expect=only("carol", "Rooms:\n[chat-v]")),
    Step("destroy", "alice", CV, "/destroy", "§4.9", expect=each(DESTROYED, "alice", "bob")),
]  # fmt: skip

VARIANT = Phase(
    "variant",
    tuple(_VARIANT),
    create_on_join=0,
    check_on_create=1,
    cmd_start_char="/",
    extra_hdrs=_EXTRA,
)

PHASES: tuple[Phase, ...] = (MAIN, VARIANT)


@dataclass
class Transcript:
    """All step results of one phase against one system."""

    system: str
    phase: Phase
    results: list[StepResult] = field(default_factory=list)
    logs: str = ""
    exit_codes: dict[str, int | None] = field(default_factory=dict)

    def by_id(self) -> Mapping[str, StepResult]:
        return {r.step.id: r for r in self.results}

    def text(self) -> str:
        return f"=== {self.system} / {self.phase.name}\n" + transcript_text(self.results)


def _check_unique_ids() -> None:
    for phase in PHASES:
        ids = [s.id for s in phase.steps]
        dupes = {i for i in ids if ids.count(i) > 1}
        if dupes:
            raise AssertionError(f"duplicate step ids in {phase.name}: {sorted(dupes)}")
        for s in phase.steps:
            if uri_user(s.ruri) == "":
                raise AssertionError(f"step {s.id}: R-URI without user part")


_check_unique_ids()


# --------------------------------------------------------------------------- systems

REFERENCE_IP = "127.0.2.1"  # the reference Kamailio (imc)
FRONT_IP = "127.0.2.2"  # the front Kamailio in front of the sidecar
SIDECAR_IP = "127.0.0.1"  # the sidecar itself
RECEIVER_IP = "127.0.1.1"  # the users' phones (shared sipp UAS; 404 phones on 127.0.1.1x)
SENDER_IP = "127.0.1.2"  # the users' outgoing sipp runs


@dataclass
class System:
    """A running system under test: users talk to it through ``agents``."""

    name: str
    agents: UserAgents
    kamailio: Kamailio
    sidecar: SidecarProcess | None = None

    def logs(self) -> str:
        out = f"--- {self.kamailio.name} log (tail)\n{self.kamailio.log_tail(40)}"
        if self.sidecar is not None:
            out += f"\n--- sidecar log (tail)\n{self.sidecar.log_tail(40)}"
        return out


def sidecar_binary() -> Path:
    """``imc-sidecar`` next to the running interpreter (the project's virtualenv)."""
    path = Path(os.environ.get("IMC_E2E_SIDECAR", Path(sys.executable).parent / "imc-sidecar"))
    if not path.exists():
        raise FileNotFoundError(f"imc-sidecar not found at {path}")
    return path


@functools.cache
def _sidecar_rpc_options() -> tuple[str, ...]:
    """The ``--rpc-*`` listener options this imc-sidecar has (each accepts ``off``)."""
    help_text = subprocess.run(
        [str(sidecar_binary()), "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout
    wanted = ("--rpc-http", "--rpc-dgram", "--rpc-binrpc")
    return tuple(opt for opt in wanted if opt in help_text)


def _agents(workdir: Path, proxy: tuple[str, int], users: Sequence[UserSpec]) -> UserAgents:
    agents = UserAgents(workdir / "ua", proxy, DOMAIN, receiver_ip=RECEIVER_IP, sender_ip=SENDER_IP)
    return make_user_agents(agents, users)


@contextlib.contextmanager
def reference_system(workdir: Path, phase: Phase) -> Iterator[System]:
    """Kamailio 5.6 with imc, set up with ``phase``'s imc settings, users registered."""
    kam = imc_reference(
        workdir / "kamailio",
        (REFERENCE_IP, free_port(REFERENCE_IP)),
        domain=DOMAIN,
        create_on_join=phase.create_on_join,
        check_on_create=phase.check_on_create,
        cmd_start_char=phase.cmd_start_char,
        extra_hdrs=phase.extra_hdrs,
    )
    agents = _agents(workdir, kam.address, phase.users)
    kam.start()
    try:
        agents.start()
        yield System("kamailio-imc", agents, kam)
    finally:
        agents.stop()
        kam.stop()


@contextlib.contextmanager
def sidecar_system(
    workdir: Path, phase: Phase, *, delivery_workers: int = 0
) -> Iterator[System]:
    """imc_sidecar behind a front Kamailio rendered from kamailio-snippets/sidecar-front.cfg;
    with `delivery_workers`, its copies leave from that many worker ports."""
    sidecar_addr = (SIDECAR_IP, free_port(SIDECAR_IP))
    first = free_udp_run(SIDECAR_IP, delivery_workers) if delivery_workers else 0
    front = sidecar_front(
        workdir / "front",
        (FRONT_IP, free_port(FRONT_IP)),
        domain=DOMAIN,
        sidecar=sidecar_addr,
        delivery_ports=(first, first + delivery_workers - 1) if first else (5100, 5107),
    )
    args = [
        "--db-url", f"sqlite:///{workdir / 'sidecar' / 'imc.sqlite'}",
        "--outbound-proxy", f"sip:{front.address[0]}:{front.address[1]}",
        "--create-on-join", str(phase.create_on_join),
        "--check-on-create", str(phase.check_on_create),
        "--imc-cmd-start-char", phase.cmd_start_char,
    ]  # fmt: skip
    if phase.extra_hdrs:
        args += ["--extra-hdrs", phase.extra_hdrs.replace("\r", "\\r").replace("\n", "\\n")]
    if first:
        args += ["--delivery-workers", str(delivery_workers), "--delivery-port", str(first)]
    # no admin RPC listeners: their default ports (5092-5094) are not ours to take
    args += [arg for opt in _sidecar_rpc_options() for arg in (opt, "off")]
    args = ["--sip-listen", f"udp:{sidecar_addr[0]}:{sidecar_addr[1]}", *args]
    sidecar = SidecarProcess(args, command=[str(sidecar_binary())], cwd=workdir / "sidecar")
    agents = _agents(workdir, front.address, phase.users)
    sidecar.start()
    try:
        front.start()
        try:
            agents.start()
            yield System("imc-sidecar", agents, front, sidecar)
        finally:
            agents.stop()
            front.stop()
    finally:
        sidecar.stop()


def record(
    system_factory: Callable[[Path, Phase], contextlib.AbstractContextManager[System]],
    workdir: Path,
    phase: Phase,
) -> Transcript:
    """Start a fresh system, run ``phase`` through it, stop it; returns the transcript."""
    with system_factory(workdir, phase) as system:
        transcript = Transcript(system.name, phase)
        transcript.results = run_conversation(system.agents, phase)
        transcript.logs = system.logs()
    # the processes are stopped now (SIGTERM): a clean stop exits with 0
    transcript.exit_codes[system.kamailio.name] = system.kamailio.returncode
    if system.sidecar is not None:
        transcript.exit_codes["imc-sidecar"] = system.sidecar.returncode
    return transcript

