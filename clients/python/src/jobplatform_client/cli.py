"""`jobplatform`: the job platform from the command line.

    jobplatform submit KIND --payload JSON [--wait] [--timeout S]
    jobplatform get ID | cancel ID | retry ID | watch ID
    jobplatform logs ID [--attempt N]
    jobplatform list [--status S] [--kind K] [--limit N]

Jobs are printed as JSON on stdout (one per line for list and watch). Exit status: 0 on
success (with --wait or watch: only when the job succeeded), 1 when the job failed, was
cancelled or did not finish in time, 2 for a usage or API error."""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from typing import Any

from . import __version__
from .client import Client, Job
from .errors import ApiError, JobPlatformError, WaitTimeout

EXIT_OK, EXIT_JOB_FAILED, EXIT_ERROR = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jobplatform", description="Submit and follow jobs on the job platform.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--url", default=os.environ.get("JOBPLATFORM_URL"), help="default: $JOBPLATFORM_URL")
    parser.add_argument("--token", default=os.environ.get("JOBPLATFORM_TOKEN"), help="default: $JOBPLATFORM_TOKEN")
    parser.add_argument("--request-timeout", type=float, default=30.0, help="seconds per HTTP request")
    sub = parser.add_subparsers(dest="command", required=True)

    submit = sub.add_parser("submit", help="submit a job and print it")
    submit.add_argument("kind")
    submit.add_argument("--payload", default="{}", help="the payload as JSON (default {})")
    submit.add_argument("--priority", choices=["high", "default", "low"])
    submit.add_argument("--run-at", help="ISO 8601 time to run at")
    submit.add_argument("--max-attempts", type=int)
    submit.add_argument("--callback-url")
    submit.add_argument("--idempotency-key")
    submit.add_argument("--wait", action="store_true", help="wait until the job has finished")
    submit.add_argument("--timeout", type=float, help="with --wait: give up after this many seconds")

    get = sub.add_parser("get", help="print a job")
    get.add_argument("id")

    cancel = sub.add_parser("cancel", help="cancel a job")
    cancel.add_argument("id")

    retry = sub.add_parser("retry", help="run a failed job again")
    retry.add_argument("id")

    logs = sub.add_parser("logs", help="print what a job's handler logged, one JSON line each")
    logs.add_argument("id")
    logs.add_argument("--attempt", type=int, help="only this attempt's lines")

    watch = sub.add_parser("watch", help="print a job at each change until it has finished")
    watch.add_argument("id")
    watch.add_argument("--timeout", type=float)

    lst = sub.add_parser("list", help="list jobs, newest first, one JSON object per line")
    lst.add_argument("--status", help="a status, or several comma-separated")
    lst.add_argument("--kind")
    lst.add_argument("--limit", type=int, default=50, help="at most this many (default 50; 0 for all)")
    lst.add_argument("--array", action="store_true", help="print one JSON array instead of lines")
    return parser


def _print(data: Any) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


def _progress(job: Job) -> None:
    """One line on a terminal, redrawn in place: a bar, the percent, the status and message."""
    progress = job.data.get("progress") or {}
    percent = progress.get("percent")
    filled = int((percent or 0) / 5)
    bar = "#" * filled + "-" * (20 - filled)
    shown = f"{percent:5.1f}%" if percent is not None else "   ?  "
    line = f"\r[{bar}] {shown} {job.status:<9} {progress.get('message') or ''}"
    sys.stderr.write(line[:120].ljust(120))
    sys.stderr.flush()


def _outcome(job: Job) -> int:
    return EXIT_OK if job.status == "succeeded" else EXIT_JOB_FAILED


def _submit(client: Client, args: argparse.Namespace) -> int:
    try:
        payload = json.loads(args.payload)
    except ValueError as exc:
        sys.stderr.write(f"jobplatform: --payload is not JSON: {exc}\n")
        return EXIT_ERROR
    job = client.submit(
        args.kind,
        payload,
        priority=args.priority,
        run_at=args.run_at,
        max_attempts=args.max_attempts,
        callback_url=args.callback_url,
        idempotency_key=args.idempotency_key,
    )
    if not args.wait:
        _print(job.data)
        return EXIT_OK
    return _wait(job, args.timeout)


def _wait(job: Job, timeout: float | None) -> int:
    tty = sys.stderr.isatty()
    if tty:
        _progress(job)
    try:
        job.wait(timeout, on_change=_progress if tty else None)
    except WaitTimeout:
        if tty:
            sys.stderr.write("\n")
        sys.stderr.write(f"jobplatform: job {job.id} is still {job.status} after {timeout} s\n")
        _print(job.data)
        return EXIT_JOB_FAILED
    if tty:
        sys.stderr.write("\n")
    _print(job.data)
    return _outcome(job)


def _watch(client: Client, args: argparse.Namespace) -> int:
    last: dict | None = None
    try:
        for data in client.watch(args.id, timeout=args.timeout):
            if data != last:
                _print(data)
                last = data
    except WaitTimeout as exc:
        sys.stderr.write(f"jobplatform: {exc}\n")
        return EXIT_JOB_FAILED
    if last is None or last.get("status") not in ("succeeded", "failed", "cancelled"):
        last = client.get(args.id).data  # the stream ended before showing the final state
        _print(last)
    return EXIT_OK if last.get("status") == "succeeded" else EXIT_JOB_FAILED


def _list(client: Client, args: argparse.Namespace) -> int:
    limit = args.limit if args.limit and args.limit > 0 else None
    page_size = min(200, limit) if limit else 200
    rows = itertools.islice(client.jobs(status=args.status, kind=args.kind, page_size=page_size), limit)
    if args.array:
        _print([job.data for job in rows])
    else:
        for job in rows:
            _print(job.data)
    return EXIT_OK


def run(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.url:
        parser.error("no API URL: pass --url or set JOBPLATFORM_URL")
    with Client(args.url, token=args.token, timeout=args.request_timeout) as client:
        try:
            if args.command == "submit":
                return _submit(client, args)
            if args.command == "get":
                _print(client.get(args.id).data)
            elif args.command == "cancel":
                _print(client.cancel(args.id).data)
            elif args.command == "retry":
                _print(client.retry(args.id).data)
            elif args.command == "logs":
                for line in client.get(args.id).logs(attempt=args.attempt):
                    _print(line)
            elif args.command == "watch":
                return _watch(client, args)
            elif args.command == "list":
                return _list(client, args)
        except ApiError as exc:
            sys.stderr.write(f"jobplatform: {exc}\n")
            if exc.details is not None:
                sys.stderr.write(json.dumps(exc.details) + "\n")
            return EXIT_ERROR
        except JobPlatformError as exc:
            sys.stderr.write(f"jobplatform: {exc}\n")
            return EXIT_ERROR
    return EXIT_OK


def main(argv: list[str] | None = None) -> None:
    try:
        sys.exit(run(argv))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
