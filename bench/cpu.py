"""Where the CPU went while a benchmark ran: per role (the worker's main process, its pool
processes, gunicorn, beat, PostgreSQL, Redis, the benchmark itself), from /proc, so a figure
that misses its goal comes with what it cost and who paid. Linux only; elsewhere empty."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class _Proc:
    ppid: int
    role: str
    seconds: float  # user + system, its own
    reaped: float  # user + system of its children that have exited and been waited for


def _role(pid: int, cmd: str, procs: dict[int, tuple[int, str]]) -> str:
    if "celery" in cmd and " worker" in cmd:
        parent_cmd = procs.get(procs[pid][0], (0, ""))[1]
        return "worker pool processes" if "celery" in parent_cmd and " worker" in parent_cmd else "worker main process"
    if "gunicorn" in cmd:
        return "web (gunicorn)"
    if "celery" in cmd and " beat" in cmd:
        return "beat"
    if cmd.startswith("postgres") or "/bin/postgres " in cmd:
        return "PostgreSQL"
    if cmd.startswith("redis-server"):
        return "Redis"
    if "-m bench" in cmd:
        return "the benchmark itself"
    return "other"


def snapshot() -> dict[int, _Proc]:
    proc = Path("/proc")
    if not proc.is_dir():
        return {}
    raw: dict[int, tuple[int, str, float, float]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        own = (int(fields[11]) + int(fields[12])) / _HZ
        reaped = (int(fields[13]) + int(fields[14])) / _HZ
        raw[int(entry.name)] = (int(fields[1]), cmd, own, reaped)
    names = {pid: (ppid, cmd) for pid, (ppid, cmd, _, _) in raw.items()}
    return {pid: _Proc(ppid, _role(pid, cmd, names), own, reaped) for pid, (ppid, cmd, own, reaped) in raw.items()}


def spent(before: dict[int, _Proc], after: dict[int, _Proc]) -> dict[str, float]:
    """CPU seconds per role between two snapshots. Pool processes that exited meanwhile (a
    worker replaces them every WORKER_MAX_TASKS_PER_CHILD jobs) are counted through their
    parent's reaped time."""
    roles: dict[str, float] = {}
    for pid, now in after.items():
        then = before.get(pid)
        own = now.seconds - (then.seconds if then and then.role == now.role else 0.0)
        roles[now.role] = roles.get(now.role, 0.0) + max(0.0, own)
        if now.role == "worker main process":
            reaped = now.reaped - (then.reaped if then else 0.0)
            roles["worker pool processes"] = roles.get("worker pool processes", 0.0) + max(0.0, reaped)
    for pid, then in before.items():
        if pid not in after and then.role == "worker pool processes":
            # Its whole life arrives in the parent's reaped time; the part before is not ours.
            roles["worker pool processes"] = roles.get("worker pool processes", 0.0) - then.seconds
    return {role: seconds for role, seconds in roles.items() if seconds > 0}


def describe(roles: dict[str, float], per: int, unit: str) -> str:
    """'worker main process 2.1 ms, ... (total 7.9 ms of CPU per job)'."""
    if not roles or per <= 0:
        return "CPU per role: not available on this system"
    order = sorted(roles.items(), key=lambda item: -item[1])
    parts = ", ".join(f"{role} {seconds / per * 1000:.2f} ms" for role, seconds in order if role != "other")
    total = sum(roles.values()) / per * 1000
    return f"CPU per {unit}: {parts} (all processes on the machine: {total:.2f} ms)"
