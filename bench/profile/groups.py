"""Share of py-spy samples per stage of the fan-out path (raw collapsed stacks in)."""

from __future__ import annotations

import collections
import sys

# (stage, function names any frame may end with), first match wins.
STAGES = [
    ("answers: fast scan (scan.scan_response)", ("scan_response",)),
    ("sendto, one per copy (transport.send_all)", ("send_all",)),
    ("fan-out: template fill + client transactions", ("send_many",)),
    ("request: parse + server transaction",
     ("parse_message", "scan_request", "SipEndpoint._on_request")),
    ("engine (commands, chat)", ("ImcEngine.handle",)),
    ("reply to the sender", ("SipEndpoint.reply",)),
    ("answers: transaction match + completion", ("client_response",)),
    ("timers", ("handle_timer", "next_deadline", "get_timer")),
    ("app glue and policy (driver, dispatch, admission, stats)",
     ("_dispatch", "on_data", "RequestPolicy.decide")),
    ("recvfrom + read loop (transport._read_ready)", ("_read_ready",)),
]


def main(path: str) -> None:
    groups: collections.Counter[str] = collections.Counter()
    total = 0
    with open(path) as handle:
        for line in handle:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            n = int(count)
            total += n
            names = [frame.split(" (")[0] for frame in stack.split(";")]
            for stage, ends in STAGES:
                if any(name.endswith(end) for name in names for end in ends):
                    groups[stage] += n
                    break
            else:
                groups["event loop, GC, other"] += n
    for stage, n in groups.most_common():
        print(f"{100 * n / total:5.1f}%  {stage}")


if __name__ == "__main__":
    main(sys.argv[1])
