"""What a handler logs, kept with its attempt (docs/kinds.md, "Logs").

A handler's lines reach an attempt's log two ways: `ctx.log(message, level)`, and any
logger of the standard `logging` module while the handler runs. For the second, one
logging.Handler sits on the root logger of each worker process; the runtime sets a
context variable around the handler's call, and the handler keeps a record only when that
variable names an attempt. A context variable belongs to its thread, so on worker-io's thread
pool, where many attempts run at once, each attempt gets only the lines of its own thread
(a thread the handler starts itself starts without it: its lines are not kept).

The lines stay in memory, capped (JOB_LOG_MAX_LINES, JOB_LOG_MAX_BYTES), and go to
PostgreSQL in one fenced INSERT (apps.jobs.joblogs): at the attempt's end, before its outcome
is written, and with each lease renewal for an attempt that runs longer than that
(workers.leases), so an attempt whose process dies keeps what was gathered up to its last
renewal. An attempt that logged nothing costs no query.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from django.conf import settings

from apps.core.text import clean_text
from apps.jobs import joblogs, lifecycle

logger = logging.getLogger("workers.runtime")

# ctx.log's levels, by the names a handler passes.
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
# The logger name the last line (how many were dropped) is stored under.
MARKER_LOGGER = "jobs.log"
# A line that crosses the byte cap keeps what fits, with this said, unless too little fits.
_CUT = " [cut: the attempt's log reached JOB_LOG_MAX_BYTES]"
_MIN_CUT_BYTES = 128

_current: contextvars.ContextVar[AttemptLog | None] = contextvars.ContextVar("job_attempt_log", default=None)
_formatter = logging.Formatter()


class AttemptLog:
    """One attempt's lines, in the order logged. Appended to by the handler's thread,
    written by it at the end or by the lease keeper's thread on the way: every change holds
    the lock, and one write at a time holds the flush lock."""

    def __init__(self, claim: lifecycle.Claim, *, max_lines: int, max_bytes: int) -> None:
        self.claim = claim
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.lines: list[joblogs.LogLine] = []
        self.dropped = 0
        self._bytes = 0
        self._written = 0  # lines already handed to PostgreSQL
        self._closed = False
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()

    def add(self, *, level: str, name: str, message: str, at: datetime | None = None) -> None:
        message = clean_text(message)
        with self._lock:
            if self._closed:
                return
            # Keep the first lines: once one is dropped, every later one is too.
            if self.dropped or len(self.lines) >= self.max_lines:
                self.dropped += 1
                return
            size = len(message.encode("utf-8"))
            room = self.max_bytes - self._bytes
            if size > room:
                if room < _MIN_CUT_BYTES:
                    self.dropped += 1
                    return
                keep = room - len(_CUT.encode("utf-8"))
                message = message.encode("utf-8")[:keep].decode("utf-8", "ignore") + _CUT
                size = len(message.encode("utf-8"))
            self._bytes += size
            line = joblogs.LogLine(
                seq=len(self.lines) + 1,
                at=at or datetime.now(UTC),
                level=level[:8],
                logger=clean_text(name, 200),
                message=message,
            )
            self.lines.append(line)

    def flush(self, *, final: bool = False) -> int:
        """Write the lines not yet written (and, when `final`, the dropped-lines marker);
        returns how many were written. A final flush closes the log: later lines (from a
        thread abandoned at its hard limit) are ignored. Fenced by the attempt's lease."""
        with self._flush_lock:
            with self._lock:
                if self._closed:
                    return 0
                upto = len(self.lines)  # the handler may log more while this writes
                pending = self.lines[self._written : upto]
                if final:
                    self._closed = True
                    if self.dropped:
                        pending.append(self._marker())
            if not pending:
                return 0
            claim = self.claim
            written = joblogs.job_log_lines_write(
                job_id=claim.job_id, attempt=claim.attempt, lease_token=claim.lease_token, lines=pending
            )
            with self._lock:
                # Fenced (the lease is gone) counts as written too: there is no later chance.
                self._written = upto
            return written

    def _marker(self) -> joblogs.LogLine:
        message = (
            f"{self.dropped} more lines dropped (the attempt's log keeps at most "
            f"{self.max_lines} lines and {self.max_bytes} bytes: JOB_LOG_MAX_LINES, JOB_LOG_MAX_BYTES)"
        )
        return joblogs.LogLine(
            seq=len(self.lines) + 1, at=datetime.now(UTC), level="WARNING", logger=MARKER_LOGGER, message=message
        )


def attempt_log(claim: lifecycle.Claim) -> AttemptLog | None:
    """A new attempt's log; None when keeping logs is off (JOB_LOG_MAX_LINES or
    JOB_LOG_MAX_BYTES set to 0)."""
    max_lines, max_bytes = settings.JOB_LOG_MAX_LINES, settings.JOB_LOG_MAX_BYTES
    if max_lines <= 0 or max_bytes <= 0:
        return None
    _install()
    return AttemptLog(claim, max_lines=max_lines, max_bytes=max_bytes)


@contextmanager
def capturing(log: AttemptLog | None) -> Iterator[None]:
    """Around the handler's call: its thread's records go to `log`; at the end, whatever
    happened, the lines are written (before the attempt's outcome, while its lease holds)."""
    if log is None:
        yield
        return
    token = _current.set(log)
    try:
        yield
    finally:
        _current.reset(token)
        flush_final(log)


def flush_final(log: AttemptLog) -> None:
    """The attempt's last write of its lines. A failure to write them must not cost the
    attempt its outcome: it is logged (to the worker's output) and the lines are lost."""
    try:
        log.flush(final=True)
    except Exception:
        logger.exception("job %s: could not keep the log lines of attempt %s", log.claim.job_id, log.claim.attempt)


def log_line(log: AttemptLog | None, kind: str, message: object, level: str = "info") -> None:
    """ctx.log: keep the line with the attempt, whatever the logging configuration's level,
    and send it to the worker's output as well (as a record the capture skips)."""
    levelno = LEVELS.get(str(level).lower())
    if levelno is None:
        raise ValueError(f"ctx.log level must be one of {', '.join(LEVELS)}; got {str(level)[:40]!r}")
    text = str(message)
    if log is not None:
        log.add(level=logging.getLevelName(levelno), name=kind, message=text)
    logging.getLogger(kind).log(levelno, "%s", text, extra={"job_log_kept": True})


class CaptureHandler(logging.Handler):
    """Sends each record logged in a handler's thread to that attempt's log."""

    def emit(self, record: logging.LogRecord) -> None:
        log = _current.get()
        if log is None or getattr(record, "job_log_kept", False):
            return
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the line
            message = f"{record.msg!r} % {record.args!r}"
        if record.exc_info:
            message = f"{message}\n{_formatter.formatException(record.exc_info)}"
        elif record.exc_text:
            message = f"{message}\n{record.exc_text}"
        if record.stack_info:
            message = f"{message}\n{record.stack_info}"
        log.add(
            level=record.levelname,
            name=record.name,
            message=message,
            at=datetime.fromtimestamp(record.created, tz=UTC),
        )


_INSTALL = threading.Lock()


def _install() -> None:
    """Put one CaptureHandler on the root logger of this process, once (after the logging
    configuration is applied, which replaces the root's handlers: hence at the first attempt,
    and again if a later configuration removed it)."""
    root = logging.getLogger()
    if any(isinstance(handler, CaptureHandler) for handler in root.handlers):
        return
    with _INSTALL:
        if not any(isinstance(handler, CaptureHandler) for handler in root.handlers):
            root.addHandler(CaptureHandler())
