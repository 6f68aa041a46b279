"""The control loop's lease, called as plain functions and as two electors in one process:
one leader at a time, a takeover only once the lease has run out, a fence that refuses a
former leader's writes, the loop's pulse in /readyz and /metrics, and alerts that never hold
up the loop's thread."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.db import transaction

from apps.core.alerts import alerts_wait, notify
from apps.jobs import lifecycle
from apps.jobs.models import Job, JobStatus
from apps.jobs.reconciler import reconcile
from apps.ops import control
from apps.ops.models import ControlLoop
from tests.processes import free_port, wait_for
from workers.beat import Elector


def expire_lease() -> None:
    """What time does to a leader that stopped renewing: its lease lies in the past."""
    ControlLoop.objects.filter(name=control.LOOP).update(lease_expires_at=control.db_now() - timedelta(seconds=1))


def test_the_first_beat_to_ask_leads_and_the_second_stands_by(db):
    assert control.control_loop_elect(identity="a", lease_seconds=5) == 1
    assert control.control_loop_elect(identity="b", lease_seconds=5) is None
    # The leader renews without a new epoch.
    assert control.control_loop_elect(identity="a", lease_seconds=5) == 1
    assert ControlLoop.objects.get(name="beat").leader == "a"


def test_another_beat_takes_over_only_once_the_lease_has_run_out_and_the_old_leader_is_refused(db):
    assert control.control_loop_elect(identity="a", lease_seconds=5) == 1
    expire_lease()

    assert control.control_loop_elect(identity="b", lease_seconds=5) == 2
    # The former leader comes back: it does not lead again, and its fence refuses it.
    assert control.control_loop_elect(identity="a", lease_seconds=5) is None
    with pytest.raises(control.NotLeader), transaction.atomic():
        control.control_loop_fence(identity="a", epoch=1)
    with transaction.atomic():
        control.control_loop_fence(identity="b", epoch=2)


def test_a_resigned_lead_is_taken_at_once(db):
    control.control_loop_elect(identity="a", lease_seconds=60)
    assert control.control_loop_resign(identity="a")
    assert control.control_loop_elect(identity="b", lease_seconds=60) == 2


def test_the_fence_refuses_a_leader_whose_own_lease_expired_even_if_nobody_took_it(db):
    control.control_loop_elect(identity="a", lease_seconds=5)
    expire_lease()
    with pytest.raises(control.NotLeader), transaction.atomic():
        control.control_loop_fence(identity="a", epoch=1)


def test_a_fenced_out_sweep_leaves_an_expired_lease_alone(user):
    job = lifecycle.job_submit(owner=user, kind="diagnostics.noop", payload={})
    assert lifecycle.job_claim(job_id=str(job.id), worker="w") is not None
    Job.objects.filter(id=job.id).update(lease_expires_at=control.db_now() - timedelta(seconds=60))
    control.control_loop_elect(identity="a", lease_seconds=5)
    expire_lease()
    control.control_loop_elect(identity="b", lease_seconds=5)

    def old_leader_fence() -> None:
        control.control_loop_fence(identity="a", epoch=1)

    figures = reconcile(fence=old_leader_fence)

    assert figures["expired"] == -1
    assert figures["promoted"] == -1
    job.refresh_from_db()
    assert (job.status, job.attempts) == (JobStatus.RUNNING, 1)  # untouched: not this beat's to recover

    def new_leader_fence() -> None:
        control.control_loop_fence(identity="b", epoch=2)

    assert reconcile(fence=new_leader_fence)["expired"] == 1
    job.refresh_from_db()
    assert job.status == JobStatus.RETRYING


# --- two electors, as two beats would run them ------------------------------------------------


@pytest.fixture
def electors(transactional_db) -> Iterator[list[Elector]]:
    made: list[Elector] = []
    for name in ("beat-a", "beat-b"):
        made.append(Elector(identity=name, lease_seconds=2, interval=0.2, stale_seconds=30))
    for elector in made:
        elector.start()
    yield made
    for elector in made:
        elector.stop(resign=False)


def test_two_electors_agree_on_one_leader_and_the_other_takes_over_when_it_dies(electors):
    wait_for(lambda: any(e.leading for e in electors), timeout=10, what="a leader")
    assert sum(e.leading for e in electors) == 1
    leader = next(e for e in electors if e.leading)
    follower = next(e for e in electors if e is not leader)

    leader.stop(resign=False)  # as kill -9 would: no resignation, the lease runs out
    wait_for(lambda: follower.leading, timeout=10, what="the follower to take over")
    row = ControlLoop.objects.get(name="beat")
    assert (row.leader, row.epoch) == (follower.identity, follower.epoch)
    wait_for(lambda: not leader.leading, timeout=5, what="the old leader's own deadline to pass")


# --- the loop's pulse -------------------------------------------------------------------------


def test_readyz_names_the_control_loop_when_no_beat_ever_led_it(db, client):
    ControlLoop.objects.all().delete()
    body = client.get("/readyz").json()
    assert "control_loop" in body["failing"]
    assert "is a beat process running" in body["checks"]["control_loop"]["error"]


def test_readyz_is_ready_after_a_sweep_and_503_once_sweeps_stop_with_one_alert(db, client, settings, caplog):
    settings.CONTROL_LOOP_STALE_SECONDS = 30
    epoch = control.control_loop_elect(identity="a", lease_seconds=5)
    control.control_loop_sweep_record(identity="a", epoch=epoch, figures={"promoted": 0})
    check = client.get("/readyz").json()["checks"]["control_loop"]
    assert (check["ok"], check["leader"]) == (True, "a")

    ControlLoop.objects.update(last_sweep_at=control.db_now() - timedelta(seconds=31))
    with caplog.at_level(logging.ERROR):
        first = client.get("/readyz")
        second = client.get("/readyz")

    assert first.status_code == 503
    assert "control_loop" in first.json()["failing"]
    assert "no control-loop sweep has succeeded for 31 s" in first.json()["checks"]["control_loop"]["error"]
    stall_alerts = [r.getMessage() for r in caplog.records if "ALERT control loop stalled" in r.getMessage()]
    assert len(stall_alerts) == 1, "a stall is alerted once, not on every probe"
    assert second.status_code == 503

    # A successful sweep ends the stall; a later stall is alerted again.
    control.control_loop_sweep_record(identity="a", epoch=epoch, figures={})
    assert client.get("/readyz").json()["checks"]["control_loop"]["ok"] is True
    # (Time moves on: the alert was 50 s ago, the sweep that ended that stall 40 s ago.)
    now = control.db_now()
    ControlLoop.objects.update(stall_alerted_at=now - timedelta(seconds=50), last_sweep_at=now - timedelta(seconds=40))
    assert control.control_loop_stall_claim(stale_seconds=30) is not None


def test_metrics_show_the_last_sweep_and_the_leader(db, client):
    epoch = control.control_loop_elect(identity="host:42", lease_seconds=5)
    control.control_loop_sweep_record(identity="host:42", epoch=epoch, figures={})
    swept = ControlLoop.objects.get(name="beat").last_sweep_at

    text = client.get("/metrics").content.decode()

    (line,) = [x for x in text.splitlines() if x.startswith("control_loop_last_sweep_timestamp_seconds ")]
    assert float(line.split()[1]) == pytest.approx(swept.timestamp())
    assert f'control_loop_leader{{epoch="{epoch}",leader="host:42"}} 1.0' in text


# --- alerts off the loop's thread -------------------------------------------------------------


class SilentSmtp:
    """An SMTP server that accepts connections and says nothing until released."""

    def __init__(self) -> None:
        self.port = free_port()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(5)
        self.accepted = threading.Event()
        self.release = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        self.accepted.set()
        self.release.wait(30)
        conn.close()
        self.sock.close()


def test_a_mail_server_that_never_greets_does_not_hold_up_the_caller(settings, receiver, caplog):
    smtp = SilentSmtp()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp.port
    settings.ALERT_EMAILS = ["ops@example.com"]
    settings.ALERT_WEBHOOK_URL = ""
    settings.ALERT_TIMEOUT_SECONDS = 30

    notify("[jobs] test", {"n": 1})

    # The call came back while the mail server still holds the connection without a greeting.
    assert smtp.accepted.wait(10), "the alert thread never reached the mail server"
    assert not smtp.release.is_set()
    smtp.release.set()
    with caplog.at_level(logging.ERROR):
        assert alerts_wait(timeout=30)
    assert any("could not email the alert" in r.getMessage() for r in caplog.records)


def test_an_alert_reaches_the_webhook_from_the_background_thread(settings, receiver):
    settings.ALERT_EMAILS = []
    settings.ALERT_WEBHOOK_URL = receiver.url
    notify("[jobs] hello", {"n": 2})
    assert alerts_wait(timeout=20)
    (received,) = receiver.requests
    assert json.loads(received.body) == {"subject": "[jobs] hello", "n": 2}
