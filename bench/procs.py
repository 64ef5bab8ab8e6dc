"""CPU time and memory of processes, from /proc (Linux only)."""

from __future__ import annotations

import contextlib
import os

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as fh:
        text = fh.read()
    # the command name is in parentheses and may contain spaces
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (threads included), in seconds."""
    fields = _stat_fields(pid)
    # fields[0] is the state (stat field 3): utime is field 14, stime field 15
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def descendants(root: int) -> list[int]:
    """``root`` and every process below it."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            ppid = int(_stat_fields(int(name))[1])
            children.setdefault(ppid, []).append(int(name))
    found = [root]
    queue = [root]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def status_kib(pid: int, key: str) -> int:
    """A ``kB`` field of /proc/PID/status (VmHWM, VmRSS, ...); 0 when gone."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def pss_kib(pid: int) -> int:
    """Proportional set size (shared pages divided among their users), KiB; 0 when gone."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (``clear_refs`` value 5, Linux >= 4.0)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


def command_name(pid: int) -> str:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/comm") as fh:
        return fh.read().strip()
    return "?"


def machine_seconds() -> tuple[float, float]:
    """CPU time of the whole machine (all cores, /proc/stat): (processes, interrupts).

    Processes = user + nice + system; interrupts = irq + softirq (on loopback most of the
    network stack runs in softirq, which no process is charged for).
    """
    with open("/proc/stat") as fh:
        fields = fh.readline().split()[1:]
    ticks = [int(x) for x in fields[:8]]  # user nice system idle iowait irq softirq steal
    return (ticks[0] + ticks[1] + ticks[2]) / CLOCK_TICKS, (ticks[5] + ticks[6]) / CLOCK_TICKS


class Meter:
    """CPU and peak RSS of named groups of processes over one measured interval."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        # group name -> root pids; the group covers each root and its descendants
        self.roots = groups
        self.members: dict[str, list[int]] = {}
        self.before: dict[int, float] = {}
        self.machine_before = (0.0, 0.0)
        self.process_s = 0.0  # all processes of the machine, over the interval
        self.interrupt_s = 0.0

    def start(self) -> None:
        self.members = {
            name: sorted({p for root in roots for p in descendants(root)})
            for name, roots in self.roots.items()
        }
        for pids in self.members.values():
            for pid in pids:
                with contextlib.suppress(OSError):
                    self.before[pid] = cpu_seconds(pid)
                reset_peak_rss(pid)
        self.machine_before = machine_seconds()

    def stop(self) -> dict[str, dict[str, float | int]]:
        """Per group: CPU seconds (all, busiest process), processes, peak RSS (KiB, sum and
        largest process) and PSS now (KiB, summed: shared memory counted once)."""
        processes, interrupts = machine_seconds()
        self.process_s = processes - self.machine_before[0]
        self.interrupt_s = interrupts - self.machine_before[1]
        result: dict[str, dict[str, float | int]] = {}
        for name, pids in self.members.items():
            used = 0.0
            busiest = 0.0
            hwm_sum = 0
            hwm_max = 0
            pss = 0
            for pid in pids:
                with contextlib.suppress(OSError):
                    spent = cpu_seconds(pid) - self.before.get(pid, 0.0)
                    used += spent
                    busiest = max(busiest, spent)
                pss += pss_kib(pid)
                hwm = status_kib(pid, "VmHWM")
                hwm_sum += hwm
                hwm_max = max(hwm_max, hwm)
            result[name] = {
                "cpu_s": round(used, 3),
                "busiest_process_cpu_s": round(busiest, 3),
                "processes": len(pids),
                "peak_rss_kib_sum": hwm_sum,
                "peak_rss_kib_max": hwm_max,
                "pss_kib": pss,
            }
        return result
