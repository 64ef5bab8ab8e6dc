"""What the demo sent and what came of it: counts, the JSON summary, the closing table.

Everything is counted from final statuses and received MESSAGEs, never from the plan:
the plan's expectation only serves to list the actions that turned out differently.
The rooms are the scenario's model replayed on the commands that were answered 200,
plus the invitations the sidecar reported as failed ("... is not registered.").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from .agent import Reply
from .scenario import COMMANDS, INVITED, Action, Rooms, Scenario

__all__ = ["FORMAT", "Tally"]

FORMAT = "imc-sidecar-demo/1"
_NOT_REGISTERED = b" is not registered. "
_MISMATCHES_KEPT = 50
_LABELS = {"chat": "texts", "unknown": "mistyped"}  # other kinds are shown as #command


def _status_key(status: int | None) -> str:
    return "timeout" if status is None else str(status)


def _by_count(counter: Mapping[str, int]) -> dict[str, int]:
    return dict(sorted(counter.items(), key=lambda item: (-item[1], item[0])))


def _short(uri: str) -> str:
    """`sip:alice@127.77.0.3` -> `alice`: tables name users and rooms as imc's notices do."""
    return uri[4:].split("@", 1)[0] if uri.startswith("sip:") else uri


class Tally:
    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.ghost_uris = [p.uri for p in scenario.ghosts]
        self.rooms = Rooms()
        self.by_kind: dict[str, Counter[str]] = {kind: Counter() for kind in (*COMMANDS, "chat")}
        self.chat_ok_by_room: Counter[str] = Counter()
        self.chat_ok_by_sender: Counter[str] = Counter()
        self.refusals: Counter[str] = Counter()
        self.invitations: Counter[str] = Counter()
        self.received: Counter[str] = Counter()
        self.received_by_user: Counter[str] = Counter()
        self.retransmissions = 0
        self.mismatches: list[dict[str, Any]] = []
        self.mismatch_count = 0

    # -- input -----------------------------------------------------------------------------

    def record(self, action: Action, reply: Reply) -> None:
        """One action's final outcome."""
        key = _status_key(reply.status)
        self.by_kind[action.kind][key] += 1
        self.retransmissions += reply.retransmissions
        ok = reply.status is not None and 200 <= reply.status < 300
        if not ok:
            self.refusals[f"{key} {reply.reason}".strip()] += 1
        if reply.status != action.expect:
            self.mismatch_count += 1
            if len(self.mismatches) < _MISMATCHES_KEPT:
                self.mismatches.append({
                    "at": action.at, "kind": action.kind, "sender": action.sender,
                    "room": action.room, "body": action.body, "expected": action.expect,
                    "status": reply.status, "reason": reply.reason,
                })
        if not ok:
            return
        self.rooms.apply(action)
        if action.kind == "chat":
            self.chat_ok_by_room[action.room] += 1
            self.chat_ok_by_sender[action.sender] += 1
        elif action.kind == "invite":
            self.invitations["sent"] += 1
            if action.ghost:
                self.invitations["unanswered"] += 1
        elif action.kind in ("accept", "reject"):
            self.invitations["accepted" if action.kind == "accept" else "rejected"] += 1

    def message_received(self, user: str, from_uri: str, body: bytes) -> None:
        """A MESSAGE the sidecar delivered to one of our users (answered 200)."""
        self.received["messages"] += 1
        self.received_by_user[user] += 1
        first = body.split(b"\n", 1)[0]
        if body.startswith(b"[") and b"]: " in first:
            self.received["chat_copies"] += 1
        elif b"invites you to join the room" in first:
            self.received["invitations"] += 1
        elif body.endswith(_NOT_REGISTERED):
            # The invitation timed out: the sidecar dropped the invitee (From: the room).
            self.received["not_registered"] += 1
            self.invitations["expired"] += 1
            invitee = "sip:" + body[: -len(_NOT_REGISTERED)].decode(errors="replace")
            self.rooms.invitation_failed(from_uri, invitee)
        else:
            self.received["notices"] += 1

    def ghost_datagrams(self, count: int) -> None:
        self.received["ghost_datagrams"] = count

    # -- derived ---------------------------------------------------------------------------

    def invited(self, uris: list[str]) -> int:
        """How many of these users are still invited somewhere (not yet answered)."""
        return sum(
            1 for room in self.rooms.live.values() for uri in uris
            if room.members.get(uri) == INVITED
        )

    @property
    def chat_ok(self) -> int:
        return sum(self.chat_ok_by_room.values())

    def _chat_refused(self) -> Counter[str]:
        return Counter({k: n for k, n in self.by_kind["chat"].items()
                        if k != "timeout" and not k.startswith("2")})

    def summary(self, context: Mapping[str, Any]) -> dict[str, Any]:
        """The JSON document of `--summary`; `context` adds where and when it ran."""
        config = self.scenario.config
        sent = sum(sum(c.values()) for c in self.by_kind.values())
        by_status: Counter[str] = Counter()
        for counter in self.by_kind.values():
            by_status.update(counter)
        created = self.rooms.created
        real = [p.uri for p in self.scenario.users]
        return {
            "format": FORMAT,
            **context,
            "seed": config.seed,
            "duration_planned_s": config.duration,
            "rate_planned": config.rate,
            "domain": config.domain,
            "network": config.network,
            "users": len(real),
            "ghosts": len(self.ghost_uris),
            "user_uris": real,
            "ghost_uris": self.ghost_uris,
            "requests": {
                "planned": len(self.scenario.actions),
                "sent": sent,
                "answered": sent - by_status["timeout"],
                "unanswered": by_status["timeout"],
                "retransmissions": self.retransmissions,
                "by_status": _by_count(by_status),
                "expected_refusals": sum(a.expect != 200 for a in self.scenario.actions),
            },
            "chat_ok": self.chat_ok,
            "chat_ok_by_room": _by_count(self.chat_ok_by_room),
            "chat_ok_by_sender": _by_count(self.chat_ok_by_sender),
            "chat_refused": sum(self._chat_refused().values()),
            "chat_refused_by_status": _by_count(self._chat_refused()),
            "chat_unanswered": self.by_kind["chat"]["timeout"],
            "commands": {k: _by_count(c) for k, c in self.by_kind.items() if k != "chat" and c},
            "commands_sent": {k: sum(c.values()) for k, c in self.by_kind.items()
                              if k != "chat" and c},
            "refusals": _by_count(self.refusals),
            "rooms_created": {
                "total": len(created),
                "private": sum(r.private for r in created),
                "uris": [r.uri for r in created],
                "private_uris": [r.uri for r in created if r.private],
            },
            "rooms_destroyed": {"total": len(self.rooms.destroyed),
                                "uris": list(self.rooms.destroyed)},
            "rooms": {
                room.uri: {
                    "private": room.private,
                    "owner": room.owner,
                    "members": len(room.members),
                    "invited": len(room.invited()),
                    "member_uris": list(room.members),
                }
                for room in self.rooms.live.values()
            },
            "invitations": {
                "sent": self.invitations["sent"],
                "accepted": self.invitations["accepted"],
                "rejected": self.invitations["rejected"],
                "unanswered": self.invitations["unanswered"],
                "expired": self.invitations["expired"],
                "open": self.invited(real),
            },
            "received": {
                "messages": self.received["messages"],
                "chat_copies": self.received["chat_copies"],
                "notices": self.received["notices"],
                "invitations": self.received["invitations"],
                "not_registered": self.received["not_registered"],
                "ghost_datagrams": self.received["ghost_datagrams"],
                "by_user": _by_count(self.received_by_user),
            },
            "mismatch_count": self.mismatch_count,
            "mismatches": self.mismatches,
        }

    # -- the closing table -------------------------------------------------------------------

    def table(self, summary: Mapping[str, Any]) -> str:
        statuses = sorted({s for c in self.by_kind.values() for s in c},
                          key=lambda s: (s == "timeout", s))
        head = f"{'':10}{'sent':>7}" + "".join(f"{s:>9}" for s in statuses)
        lines = ["requests sent, by final status (timeout: none within 32 s)", "",
                 head, "-" * len(head)]
        total: Counter[str] = Counter()
        for kind, counter in self.by_kind.items():
            if not counter:
                continue
            total.update(counter)
            cells = "".join(f"{counter[s] or '':>9}" for s in statuses)
            lines.append(f"{_LABELS.get(kind, '#' + kind):10}{sum(counter.values()):>7}{cells}")
        lines.append("-" * len(head))
        cells = "".join(f"{total[s]:>9}" for s in statuses)
        lines.append(f"{'total':10}{sum(total.values()):>7}{cells}")

        def top(counter: Counter[str]) -> str:
            return ", ".join(f"{_short(k)} {n}" for k, n in counter.most_common(5)) or "-"

        rooms, inv, rec = summary["rooms_created"], summary["invitations"], summary["received"]
        settled = {True: "settled: nothing pending", False: "NOT settled: some MESSAGEs "
                   "were still pending", None: "not waited for"}[summary.get("settled")]
        facts = [
            ("time", f"{summary.get('started_at', '?')} to {summary.get('ended_at', '?')}"),
            ("sidecar", f"{summary.get('sip', '?')}, {settled}"),
            ("rooms", f"{rooms['total']} created ({rooms['private']} private), "
                      f"{summary['rooms_destroyed']['total']} destroyed, "
                      f"{len(summary['rooms'])} left"),
            ("invitations", f"{inv['sent']} sent: {inv['accepted']} accepted, "
                            f"{inv['rejected']} rejected, {inv['unanswered']} to ghosts "
                            f"({inv['expired']} timed out), {inv['open']} open"),
            ("chat", f"{summary['chat_ok']} texts answered 200, "
                     f"{summary['chat_refused']} refused, "
                     f"{summary['chat_unanswered']} unanswered"),
            ("busiest rooms", top(self.chat_ok_by_room)),
            ("top talkers", top(self.chat_ok_by_sender)),
            ("received", f"{rec['messages']} MESSAGEs answered by the users: "
                         f"{rec['chat_copies']} chat copies, {rec['invitations']} invitations, "
                         f"{rec['notices'] + rec['not_registered']} other notices"),
            ("unexpected", f"{self.mismatch_count} statuses differ from the plan"
                           + (" (see the summary's mismatches)" if self.mismatch_count else "")),
        ]
        width = max(len(name) for name, _ in facts)
        lines.append("")
        lines += [f"{name:<{width}}  {text}" for name, text in facts]
        return "\n".join(lines)
