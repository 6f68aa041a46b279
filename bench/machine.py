"""What the figures were measured on: CPU, memory, versions, date, load."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata

from bench.stack import ROOT, Stack


def _cpu() -> str:
    models, processors = [], 0
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "processor":
                    processors += 1
                elif key.strip() == "model name" and not models:
                    models.append(value.strip())
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    text = f"{models[0] if models else platform.processor() or 'unknown'}, {processors or os.cpu_count()} logical CPUs"
    if usable and processors and usable != processors:
        text += f" ({usable} usable by this process)"
    return text


def _memory() -> str:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _os() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"') + f", kernel {platform.release()}"
    except OSError:
        pass
    return platform.platform()


def _commit() -> str:
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30)

    try:
        head = git("rev-parse", "--short", "HEAD").stdout.strip()
        if not head:
            return "unknown"
        # diff-index reads the index without refreshing (writing) it.
        dirty = git("diff-index", "--quiet", "HEAD", "--").returncode != 0
        return head + (" with uncommitted changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def describe(stack: Stack) -> list[tuple[str, str]]:
    try:
        pg = stack.sql("SHOW server_version")[0][0]
    except Exception:
        pg = "unknown"
    try:
        rd = stack.redis(0).info("server")["redis_version"]
    except Exception:
        rd = "unknown"
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return [
        ("date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("CPU", _cpu()),
        ("memory", _memory()),
        ("OS", _os()),
        ("Python", platform.python_version()),
        ("PostgreSQL", pg),
        ("Redis", rd),
        (
            "packages",
            ", ".join(
                f"{name} {_version(name)}"
                for name in ("Django", "djangorestframework", "celery", "kombu", "gunicorn", "psycopg")
            ),
        ),
        ("commit", _commit()),
        ("load average at start", " ".join(f"{x:.2f}" for x in load)),
    ]
