"""The dead-letter monitor, called as a plain function: its alerts (the ERROR log line, email,
a webhook served by a real HTTP server in the test), the depth alert's repeat period in the
private Redis, the figures it reads, and the `dead_letter` queue it keeps mirroring the open
letters."""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from django.utils import timezone

from apps.core.alerts import alerts_wait
from apps.deadletters.models import DeadLetter
from apps.deadletters.monitor import DEPTH_ALERT_KEY, dead_letters_monitor
from apps.deadletters.selectors import dead_letter_stats
from apps.deadletters.services import dead_letter_discard, dead_letter_redrive
from apps.jobs import lifecycle
from apps.jobs.lifecycle import AttemptFailure
from apps.jobs.models import Job
from apps.jobs.publish import DEAD_LETTER_QUEUE
from apps.jobs.reconciler import redis_client
from tests.processes import free_port, wait_for

MONITOR = "apps.deadletters.monitor"
# Alerts travel on a background thread (apps.core.alerts), which logs its channels' failures.
LOGGERS = (MONITOR, "apps.core.alerts")
PAYLOADS: dict[str, dict[str, Any]] = {"diagnostics.flaky": {"fail_times": 9}, "diagnostics.noop": {}}


@pytest.fixture(autouse=True)
def _no_monitor_state_in_redis() -> Iterator[None]:
    """Every test starts without a mirror or a depth alert left by another, and leaves none."""
    redis_client().delete(DEAD_LETTER_QUEUE, DEPTH_ALERT_KEY)
    yield
    redis_client().delete(DEAD_LETTER_QUEUE, DEPTH_ALERT_KEY)


def failed_job(owner: Any, kind: str = "diagnostics.flaky") -> Job:
    """A job that failed permanently, parked by the real lifecycle."""
    job = lifecycle.job_submit(owner=owner, kind=kind, payload=PAYLOADS[kind])
    claim = lifecycle.job_claim(job_id=str(job.id), worker="w")
    assert claim is not None
    failure = AttemptFailure("Boom", "it broke", "Traceback...", permanent=True)
    assert lifecycle.job_fail_attempt(claim=claim, failure=failure) == "failed"
    return job


def letter_of(job: Job) -> DeadLetter:
    return DeadLetter.objects.get(job=job, state=DeadLetter.State.OPEN)


def alerts(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name in LOGGERS and r.levelno == logging.ERROR]


def run_monitor() -> dict[str, int]:
    """One sweep of the monitor, then wait for its alerts to have been tried on every channel."""
    figures = dead_letters_monitor()
    assert alerts_wait(timeout=20), "alerts still undelivered after 20 s"
    return figures


def mirrored_letter_ids() -> list[int]:
    """The letter ids on the `dead_letter` queue, decoded as a worker would, in the order a
    worker would take them (kombu pushes on the left and pops on the right)."""
    ids = []
    for raw in reversed(redis_client().lrange(DEAD_LETTER_QUEUE, 0, -1)):
        message = json.loads(raw)
        assert message["headers"]["task"] == "platform.dead_letter"
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        ids.append(args[0])
    return ids


@dataclass
class Webhook:
    url: str
    status: int = 204
    received: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    """A real HTTP endpoint on 127.0.0.1 that records each POST and answers `status`."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            hook.received.append({"content_type": self.headers["Content-Type"], "body": json.loads(body)})
            self.send_response(hook.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)  # port 0: the kernel picks a free one
    hook = Webhook(url=f"http://127.0.0.1:{server.server_port}/alerts")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        assert not thread.is_alive(), "the webhook server did not stop"


# --- new letters ---------------------------------------------------------------------------------


def test_new_letters_raise_one_error_alert_and_are_marked_alerted(user, caplog):
    jobs = [
        failed_job(user, "diagnostics.flaky"),
        failed_job(user, "diagnostics.flaky"),
        failed_job(user, "diagnostics.noop"),
    ]
    now = timezone.now()

    with caplog.at_level(logging.ERROR):
        figures = dead_letters_monitor(now=now)

    assert figures == {"new": 3, "depth": 3, "depth_alert": 0, "mirrored": 3}
    (alert,) = alerts(caplog)
    assert alert.startswith("ALERT 3 new dead letter(s)")
    assert "2 diagnostics.flaky, 1 diagnostics.noop" in alert
    assert "3 open in all" in alert
    assert {letter_of(job).alerted_at for job in jobs} == {now}


def test_a_letter_is_alerted_once_and_a_later_one_on_its_own(user, caplog):
    failed_job(user)
    run_monitor()
    caplog.clear()

    with caplog.at_level(logging.ERROR):
        quiet = run_monitor()
        later = letter_of(failed_job(user, "diagnostics.noop"))
        next_sweep = run_monitor()

    assert quiet["new"] == 0
    assert next_sweep["new"] == 1
    (alert,) = alerts(caplog)
    assert alert.startswith("ALERT 1 new dead letter(s): 1 diagnostics.noop; 2 open in all")
    later.refresh_from_db()
    assert later.alerted_at is not None


def test_an_alert_is_emailed_to_alert_emails(user, settings, mailoutbox):
    settings.ALERT_EMAILS = ["ops@example.com"]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    job = failed_job(user)

    run_monitor()
    run_monitor()  # nothing new: no second email

    (email,) = mailoutbox
    assert email.to == ["ops@example.com"]
    assert email.subject == "[jobs] 1 new dead letter(s)"
    body = json.loads(email.body)
    assert [(x["job_id"], x["kind"], x["error_type"]) for x in body["new"]] == [
        (str(job.id), "diagnostics.flaky", "Boom")
    ]
    assert body["depth"] == 1


def test_an_alert_is_posted_to_the_webhook_as_json(user, settings, webhook):
    settings.ALERT_WEBHOOK_URL = webhook.url
    job = failed_job(user)
    letter = letter_of(job)
    # Parked two minutes ago, so the age the alert reports is a figure worth checking.
    DeadLetter.objects.filter(pk=letter.pk).update(created_at=timezone.now() - timedelta(minutes=2))

    run_monitor()
    run_monitor()

    (request,) = webhook.received
    assert request["content_type"] == "application/json"
    assert request["body"]["subject"] == "[jobs] 1 new dead letter(s)"
    assert request["body"]["new"] == [
        {
            "id": letter.pk,
            "job_id": str(job.id),
            "kind": "diagnostics.flaky",
            "error_type": "Boom",
            "error_message": "it broke",
        }
    ]
    assert request["body"]["depth"] == 1
    assert 120 <= request["body"]["oldest_age_seconds"] < 180


def test_a_webhook_answering_500_is_logged_not_raised(user, settings, webhook, caplog):
    settings.ALERT_WEBHOOK_URL = webhook.url
    webhook.status = 500
    letter = letter_of(failed_job(user))

    with caplog.at_level(logging.ERROR):
        figures = run_monitor()

    assert figures["new"] == 1
    assert len(webhook.received) == 1
    assert any("could not post the alert" in message for message in alerts(caplog))
    letter.refresh_from_db()
    assert letter.alerted_at is not None  # alerted all the same: not repeated every sweep


def test_a_webhook_refusing_connections_does_not_stop_the_email(user, settings, mailoutbox, caplog):
    settings.ALERT_EMAILS = ["ops@example.com"]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.ALERT_WEBHOOK_URL = f"http://127.0.0.1:{free_port()}/alerts"  # nothing listens there
    failed_job(user)

    with caplog.at_level(logging.ERROR):
        figures = run_monitor()

    assert figures["new"] == 1
    assert len(mailoutbox) == 1
    assert any("could not post the alert" in message for message in alerts(caplog))


def test_a_mail_server_refusing_connections_does_not_stop_the_webhook(user, settings, webhook, caplog):
    settings.ALERT_EMAILS = ["ops@example.com"]
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()  # nothing listens there
    settings.ALERT_WEBHOOK_URL = webhook.url
    failed_job(user)

    with caplog.at_level(logging.ERROR):
        figures = run_monitor()

    assert figures["new"] == 1
    assert len(webhook.received) == 1
    assert any("could not email the alert" in message for message in alerts(caplog))


# --- depth -----------------------------------------------------------------------------------------


def test_a_depth_over_the_threshold_alerts_once_per_repeat_period(user, settings, mailoutbox, caplog):
    settings.DEAD_LETTER_ALERT_DEPTH = 1
    # A period no two back-to-back sweeps can outlast, however loaded the machine.
    settings.ALERT_REPEAT_SECONDS = 60
    settings.ALERT_EMAILS = ["ops@example.com"]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    failed_job(user)
    failed_job(user)

    with caplog.at_level(logging.ERROR):
        first = run_monitor()
        second = run_monitor()

    assert (first["depth"], first["depth_alert"], second["depth_alert"]) == (2, 1, 0)
    depth_alerts = [m for m in alerts(caplog) if "depth" in m]
    assert len(depth_alerts) == 1
    assert depth_alerts[0].startswith("ALERT dead-letter depth 2 is over the threshold of 1")
    assert [m.subject for m in mailoutbox] == ["[jobs] 2 new dead letter(s)", "[jobs] dead-letter depth over threshold"]
    assert 55 <= redis_client().ttl(DEPTH_ALERT_KEY) <= 60
    # Once the repeat period is over (the key expires in Redis), a depth still high alerts again:
    # the period is cut short here, and Redis's own expiry does the rest.
    redis_client().pexpire(DEPTH_ALERT_KEY, 100)
    wait_for(lambda: not redis_client().exists(DEPTH_ALERT_KEY), timeout=5, what="the depth alert key to expire")
    assert run_monitor()["depth_alert"] == 1


def test_a_depth_at_the_threshold_does_not_alert(user, settings):
    settings.DEAD_LETTER_ALERT_DEPTH = 1
    failed_job(user)

    assert run_monitor()["depth_alert"] == 0
    assert not redis_client().exists(DEPTH_ALERT_KEY)


# --- figures -----------------------------------------------------------------------------------------


def test_stats_are_zero_without_open_letters(db):
    stats = dead_letter_stats()

    assert (stats.depth, stats.oldest_age_seconds) == (0, 0.0)


def test_stats_count_open_letters_and_age_the_oldest(user):
    hour_old = letter_of(failed_job(user))
    failed_job(user)  # a fresh one
    older_but_discarded = letter_of(failed_job(user))
    dead_letter_discard(letter_id=older_but_discarded.pk)
    now = timezone.now()
    DeadLetter.objects.filter(pk=hour_old.pk).update(created_at=now - timedelta(hours=1))
    DeadLetter.objects.filter(pk=older_but_discarded.pk).update(created_at=now - timedelta(hours=5))

    stats = dead_letter_stats()

    assert stats.depth == 2
    assert 3600 <= stats.oldest_age_seconds < 3660


# --- the `dead_letter` queue mirror ----------------------------------------------------------------


def test_the_dead_letter_queue_mirrors_the_open_letters(user):
    letters = [letter_of(failed_job(user)) for _ in range(3)]
    r = redis_client()

    first = run_monitor()
    assert (first["mirrored"], r.llen(DEAD_LETTER_QUEUE)) == (3, 3)
    assert mirrored_letter_ids() == [x.pk for x in letters]  # oldest first

    dead_letter_discard(letter_id=letters[0].pk)
    dead_letter_redrive(letter_id=letters[1].pk)
    after_resolving = run_monitor()
    assert (after_resolving["mirrored"], r.llen(DEAD_LETTER_QUEUE)) == (1, 1)
    assert mirrored_letter_ids() == [letters[2].pk]

    unchanged = run_monitor()
    assert (unchanged["mirrored"], r.llen(DEAD_LETTER_QUEUE)) == (0, 1)


def test_the_mirror_is_rebuilt_after_redis_lost_it(user):
    letters = [letter_of(failed_job(user)) for _ in range(2)]
    run_monitor()

    redis_client().delete(DEAD_LETTER_QUEUE)
    figures = run_monitor()

    assert figures["mirrored"] == 2
    assert mirrored_letter_ids() == [x.pk for x in letters]
