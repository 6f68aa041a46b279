"""Alert delivery (email to ALERT_EMAILS, a JSON POST to ALERT_WEBHOOK_URL), off the caller's
thread.

The control loop raises alerts, and it must never wait for them: an SMTP server that accepts
and never greets would otherwise hold recovery for as long as its timeout. `notify` hands the
alert to one background thread per process and returns at once; that thread delivers with
short timeouts (ALERT_TIMEOUT_SECONDS). The ERROR log line each caller writes is the alert of
record; these channels are its copies, so when they fall behind, alerts beyond a bounded
backlog are dropped with a log line instead of piling up in memory."""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
import urllib.request
from typing import Any

from django.conf import settings
from django.core.mail import get_connection, send_mail

logger = logging.getLogger("apps.core.alerts")

BACKLOG = 100


def deliver(subject: str, body: dict[str, Any]) -> None:
    """Send an alert to every configured channel now; a failing channel is logged, not raised,
    and does not stop the others."""
    timeout = settings.ALERT_TIMEOUT_SECONDS
    if settings.ALERT_EMAILS:
        try:
            send_mail(
                subject,
                json.dumps(body, indent=2, default=str),
                settings.DEFAULT_FROM_EMAIL,
                settings.ALERT_EMAILS,
                connection=get_connection(timeout=timeout),
            )
        except Exception:
            logger.exception("could not email the alert %r", subject)
    if settings.ALERT_WEBHOOK_URL:
        data = json.dumps({"subject": subject, **body}, default=str).encode()
        request = urllib.request.Request(
            settings.ALERT_WEBHOOK_URL, data=data, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout):
                pass
        except Exception:
            logger.exception("could not post the alert %r to the webhook", subject)


class _Sender:
    def __init__(self) -> None:
        self.pid = os.getpid()
        self.queue: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue(maxsize=BACKLOG)
        self.thread = threading.Thread(target=self._run, name="alert-sender", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            subject, body = self.queue.get()
            try:
                deliver(subject, body)
            except Exception:  # nothing may end the thread later alerts need
                logger.exception("alert %r could not be delivered", subject)
            finally:
                self.queue.task_done()


_sender: _Sender | None = None
_lock = threading.Lock()


def _current_sender() -> _Sender:
    global _sender
    with _lock:
        if _sender is None or _sender.pid != os.getpid():  # a forked child starts its own
            _sender = _Sender()
        return _sender


def notify(subject: str, body: dict[str, Any]) -> None:
    """Queue an alert for the configured channels and return at once."""
    if not settings.ALERT_EMAILS and not settings.ALERT_WEBHOOK_URL:
        return
    try:
        _current_sender().queue.put_nowait((subject, body))
    except queue.Full:
        logger.error("alert %r dropped: %d alerts are still waiting for their channels", subject, BACKLOG)


def alerts_wait(timeout: float = 10.0) -> bool:
    """Wait until every queued alert has been tried (tests, and a process about to exit).
    True when none is left."""
    sender = _sender
    if sender is None or sender.pid != os.getpid():
        return True
    deadline = time.monotonic() + timeout
    while sender.queue.unfinished_tasks:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
