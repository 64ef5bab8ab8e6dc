"""Summarise py-spy raw (collapsed) stacks: top self and inclusive frames, in percent."""

from __future__ import annotations

import collections
import re
import sys

_LINE = re.compile(r" \(([^:]+):\d+\)")


def main(path: str, top: int = 30) -> None:
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    with open(path) as handle:
        lines = handle.readlines()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        n = int(count)
        total += n
        frames = [_LINE.sub(r" (\1)", f) for f in stack.split(";")]
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    print(f"{total} samples\n-- self --")
    for f, n in own.most_common(top):
        print(f"{100 * n / total:5.1f}%  {f}")
    print("-- inclusive --")
    for f, n in incl.most_common(top):
        print(f"{100 * n / total:5.1f}%  {f}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 30)
