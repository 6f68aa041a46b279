"""bench/run: bring the stack up, run the benchmarks asked for, print the table and write it
with the machine's description to BENCHMARKS.md. Reports; never asserts a goal."""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from bench import (
    admin_dashboard,
    benchmarks,
    chaos_figures,
    fairness,
    recovery,
    scale,
    schedules,
    submit,
    webhooks_io,
    workflows,
)
from bench.machine import describe
from bench.report import TITLES, Report
from bench.stack import ROOT, BenchError, Stack

# name -> (number in the table, function). Run in this order: the idle and draining ones
# first, then api (it drains what it submits), batch (it leaves its jobs queued), and the
# million rows last.
BENCHMARKS: dict[str, tuple[int, Callable]] = {
    "latency": (4, benchmarks.latency),
    "drain": (1, benchmarks.drain),
    "recovery": (6, recovery.recovery),
    "api": (2, submit.api),
    "batch": (3, submit.batch),
    "workflows": (workflows.NUMBER, workflows.workflows),  # before scale: its seed holds jobs that never end
    "schedules": (schedules.NUMBER, schedules.schedules),  # before scale too: it waits for an idle platform
    "fairness": (fairness.NUMBER, fairness.fairness),  # before scale too: it drains whole backlogs
    "webhooks": (webhooks_io.NUMBER, webhooks_io.webhooks),  # before scale too: it waits for its deliveries
    "scale": (5, scale.scale),
    "dashboard": (admin_dashboard.NUMBER, admin_dashboard.dashboard),  # reuses scale's million jobs
}


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run",
        description="Run the benchmarks side by side and write BENCHMARKS.md (see bench/README.md).",
    )
    parser.add_argument(
        "benchmarks",
        nargs="*",
        metavar="BENCHMARK",
        help=f"which to run, of: {', '.join(BENCHMARKS)} (default: all)",
    )
    parser.add_argument("--quick", action="store_true", help="small N: a smoke test of the scripts, in minutes")
    parser.add_argument("--jobs", type=int, help="jobs per drain round (default 4000; --quick 500)")
    parser.add_argument("--rounds", type=int, help="interleaved drain rounds (default 3; --quick 1)")
    parser.add_argument(
        "--rows",
        type=int,
        help="jobs seeded for the scale benchmark (default 1,000,000; 10,000,000 is issue 18's size, where the "
        "list's and the poll's goal is p50 < 25 ms instead of 20)",
    )
    parser.add_argument(
        "--output",
        default="BENCHMARKS.md",
        help="where to write the report, from the project root (default: %(default)s)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the platform's processes (repeatable), e.g. --env WEB_CONCURRENCY=4",
    )
    args = parser.parse_args(argv)
    for name in args.benchmarks:
        if name not in BENCHMARKS:
            parser.error(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
    for item in args.env:
        if "=" not in item:
            parser.error(f"--env {item!r}: expected NAME=VALUE")
    return args


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = _arguments(sys.argv[1:] if argv is None else argv)
    sizes = benchmarks.QUICK if args.quick else benchmarks.Sizes()
    if args.jobs:
        sizes = replace(sizes, drain_jobs=args.jobs)
    if args.rounds:
        sizes = replace(sizes, drain_rounds=args.rounds)
    if args.rows:
        sizes = replace(sizes, scale_rows=args.rows)
    chosen = [name for name in BENCHMARKS if not args.benchmarks or name in args.benchmarks]
    command = "bench/run" + "".join(f" {shlex.quote(a)}" for a in (sys.argv[1:] if argv is None else argv))

    stamp = time.strftime("%Y%m%d-%H%M%S")
    extra_env = dict(item.split("=", 1) for item in args.env)
    stack = Stack(log_dir=ROOT / "var" / "bench" / stamp, extra_env=extra_env)
    report = Report()
    machine: list[tuple[str, str]] = []
    interrupted = False
    started = time.monotonic()
    # Ctrl-C (even where a shell started us with SIGINT ignored), kill and hang-up all stop
    # the run the same way: through the cleanup below.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    try:
        print(f"bringing the stack up ({', '.join(chosen)}{', quick' if args.quick else ''})", flush=True)
        stack.start()
        machine = describe(stack)
        for name in chosen:
            number, run = BENCHMARKS[name]
            print(f"{number}. {TITLES[number]} ({name})", flush=True)
            t0 = time.monotonic()
            try:
                run(stack, report, sizes)
            except BenchError as exc:
                report.error(number, str(exc))
            except Exception as exc:
                traceback.print_exc()
                report.error(number, f"{type(exc).__name__}: {exc}")
            print(f"   ({time.monotonic() - t0:.0f} s)", flush=True)
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: stopping everything this run started", file=sys.stderr, flush=True)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        report.errors.append(f"the stack did not come up: {exc}")
    finally:
        # Cleaning up must not be cut short by a second Ctrl-C.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        stack.close()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)

    if not report.rows:
        print("no figures", file=sys.stderr)
        return 130 if interrupted else 1
    print()
    print(report.table())
    if interrupted:
        print(f"\n(interrupted: {args.output} left as it was)")
        return 130
    output = ROOT / Path(args.output)
    # The chaos suite's recovery figures come from the test suite, not from here: keep them.
    kept = chaos_figures.carried_over(output.read_text()) if output.exists() else ""
    text = report.markdown(command=command, machine=machine, quick=args.quick, interrupted=False)
    output.write_text(chaos_figures.replace_section(text, kept) if kept else text)
    print(
        f"\nwrote {output.relative_to(ROOT) if output.is_relative_to(ROOT) else output} "
        f"in {time.monotonic() - started:.0f} s; logs in {stack.log_dir.relative_to(ROOT)}"
    )
    return 1 if report.errors else 0
