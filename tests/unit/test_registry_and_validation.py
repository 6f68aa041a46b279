"""The kind registry, submission validation, backoff arithmetic, the job state machine and
the reconciler, called as plain functions against the real database and the private Redis."""

from __future__ import annotations

import base64
import json
import random
import uuid
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.conf import settings
from django.utils import timezone
from jsonschema.exceptions import SchemaError

from apps.core.errors import InvalidInput
from apps.deadletters.models import DeadLetter
from apps.jobs import lifecycle, reconciler
from apps.jobs.lifecycle import AttemptFailure
from apps.jobs.models import Job, JobAttempt, JobStatus, JobStep
from apps.jobs.registry import Kind, Registry, UnknownKind, registry
from tests.conftest import json_roundtrip
from tests.factories import JobFactory

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "additionalProperties": False}


def handler(ctx: Any, payload: dict[str, Any]) -> dict[str, Any]:
    return {}


def broker_messages(queue: str) -> list[dict[str, Any]]:
    """The messages waiting on a queue of the private Redis broker, decoded as a worker would."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        messages = []
        for raw in client.lrange(queue, 0, -1):
            message = json.loads(raw)
            args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
            messages.append({"task": message["headers"]["task"], "args": args, "kwargs": kwargs})
        return messages
    finally:
        client.close()


# --- the registry ----------------------------------------------------------------------------


def test_a_kind_refuses_an_unknown_priority():
    with pytest.raises(ValueError, match="priority must be one of"):
        Kind(name="t.k", handler=handler, schema=SCHEMA, priority="urgent")


@pytest.mark.parametrize(("soft", "hard"), [(10, 10), (10, 5)])
def test_a_kind_refuses_a_hard_time_limit_not_above_the_soft_one(soft, hard):
    with pytest.raises(ValueError, match="time_limit must exceed soft_time_limit"):
        Kind(name="t.k", handler=handler, schema=SCHEMA, soft_time_limit=soft, time_limit=hard)


def test_a_kind_refuses_zero_attempts():
    with pytest.raises(ValueError, match="max_attempts"):
        Kind(name="t.k", handler=handler, schema=SCHEMA, max_attempts=0)


@pytest.mark.parametrize("schema", [{"type": "no-such-type"}, {"properties": []}, {"minimum": "zero"}])
def test_a_kind_refuses_an_invalid_json_schema(schema):
    with pytest.raises(SchemaError):
        Kind(name="t.k", handler=handler, schema=schema)


def test_a_kind_with_no_queue_of_its_own_uses_the_priority_as_queue():
    shared = Kind(name="t.k", handler=handler, schema=SCHEMA)
    dedicated = Kind(name="t.k", handler=handler, schema=SCHEMA, queue="images")

    assert [shared.queue_for(p) for p in ("high", "default", "low")] == ["high", "default", "low"]
    assert dedicated.queue_for("high") == "images"


def test_the_registry_raises_unknown_kind_for_a_name_it_does_not_know():
    with pytest.raises(UnknownKind):
        registry.get("no.such.kind")
    assert "no.such.kind" not in registry
    assert "diagnostics.noop" in registry


def test_the_registry_loads_every_kind_module_named_in_settings():
    names = [k.name for k in registry]

    assert names == sorted(names)
    assert {"diagnostics.noop", "diagnostics.sleep", "diagnostics.flaky", "images.thumbnail"} <= set(names)
    assert registry.get("diagnostics.crash").max_attempts == 2  # DIAGNOSTICS_UNSAFE=1 in tests


def test_the_registry_refuses_two_kinds_with_one_name():
    r = Registry()
    r.register(Kind(name="t.k", handler=handler, schema=SCHEMA))
    r.register(Kind(name="t.k", handler=handler, schema=SCHEMA))  # the same declaration imported twice

    with pytest.raises(ValueError, match="declared twice"):
        r.register(Kind(name="t.k", handler=lambda ctx, payload: None, schema=SCHEMA))


def test_payload_errors_lists_every_error_with_its_path():
    k = registry.get("images.thumbnail")

    errors = k.payload_errors({"image_base64": 7, "sizes": [4, 16, 9000], "format": "gif", "extra": 1})

    assert [e["path"] for e in errors] == ["(root)", "format", "image_base64", "sizes/0", "sizes/2"]
    assert "extra" in errors[0]["message"]
    assert "9000" in errors[-1]["message"]
    assert k.payload_errors({"image_base64": "aGk=", "sizes": [16]}) == []


# --- validation of a submission ---------------------------------------------------------------


def test_job_validate_fills_in_the_kinds_defaults():
    k, priority, max_attempts = lifecycle.job_validate(kind="diagnostics.flaky", payload={"fail_times": 0})

    assert k is registry.get("diagnostics.flaky")
    assert (priority, max_attempts) == ("default", 5)


@pytest.mark.parametrize("max_attempts", [1, 5])
def test_job_validate_accepts_max_attempts_within_the_kinds_bound(max_attempts):
    _, _, chosen = lifecycle.job_validate(
        kind="diagnostics.flaky", payload={"fail_times": 0}, max_attempts=max_attempts
    )

    assert chosen == max_attempts


@pytest.mark.parametrize("max_attempts", [0, -3, 6])
def test_job_validate_refuses_max_attempts_outside_the_kinds_bound(max_attempts):
    with pytest.raises(InvalidInput) as raised:
        lifecycle.job_validate(kind="diagnostics.flaky", payload={"fail_times": 0}, max_attempts=max_attempts)

    assert raised.value.code == "invalid_max_attempts"
    assert "between 1 and 5" in raised.value.message


@pytest.mark.parametrize(
    ("arguments", "code"),
    [
        ({"kind": "no.such.kind", "payload": {}}, "unknown_kind"),
        ({"kind": "diagnostics.noop", "payload": []}, "invalid_payload"),
        ({"kind": "diagnostics.sleep", "payload": {"seconds": float("inf")}}, "invalid_payload"),
        ({"kind": "diagnostics.noop", "payload": {}, "priority": "urgent"}, "invalid_priority"),
    ],
)
def test_job_validate_refuses_a_bad_submission_with_a_stable_code(arguments, code):
    with pytest.raises(InvalidInput) as raised:
        lifecycle.job_validate(**arguments)

    assert raised.value.code == code
    assert raised.value.status_code == 400


# --- backoff ----------------------------------------------------------------------------------


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5, 6])
def test_backoff_stays_between_half_a_step_and_a_step(attempt):
    base, cap = 2.0, 1000.0
    step = min(cap, base * 2 ** (attempt - 1))

    delays = [lifecycle.backoff_seconds(attempt, base=base, cap=cap, rng=random.Random(seed)) for seed in range(50)]

    assert all(step / 2 <= d <= step for d in delays)


def test_backoff_grows_with_each_attempt():
    rng = random.Random(7)

    delays = [lifecycle.backoff_seconds(a, base=1.0, cap=10_000.0, rng=rng) for a in range(1, 10)]

    assert delays == sorted(delays)
    assert delays[-1] > 100 * delays[0] / 2


def test_backoff_is_capped():
    delays = [lifecycle.backoff_seconds(a, base=1.0, cap=30.0, rng=random.Random(a)) for a in range(6, 60)]

    assert all(15.0 <= d <= 30.0 for d in delays)


def test_backoff_is_jittered():
    delays = {lifecycle.backoff_seconds(3, base=1.0, cap=60.0, rng=random.Random(seed)) for seed in range(10)}

    assert len(delays) == 10


# --- the state machine ------------------------------------------------------------------------


def submitted(user: Any, kind: str = "diagnostics.noop", payload: dict | None = None, **options: Any) -> Job:
    return lifecycle.job_submit(owner=user, kind=kind, payload=payload or {}, **options)


def claim(job: Job, worker: str = "worker-1") -> lifecycle.Claim:
    c = lifecycle.job_claim(job_id=str(job.id), worker=worker)
    assert c is not None
    return c


def attempts_of(job: Job) -> list[tuple[int, str]]:
    return list(JobAttempt.objects.filter(job=job).order_by("number").values_list("number", "outcome"))


def requeue(job: Job) -> None:
    """Let the backoff elapse (moved into the past, not waited for), then run the
    reconciler's promotion."""
    job.refresh_from_db()
    assert job.status == JobStatus.RETRYING
    Job.objects.filter(id=job.id).update(run_at=timezone.now() - timedelta(milliseconds=1))
    assert reconciler.jobs_promote_due(now=timezone.now()) == 1


def test_claiming_a_queued_job_makes_it_running_with_an_attempt_and_a_lease(user):
    job = submitted(user, "diagnostics.sleep", {"seconds": 1})
    before = timezone.now()

    c = claim(job, worker="celery@host-a")

    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING
    assert job.attempts == 1
    assert str(job.lease_token) == c.lease_token
    assert job.lease_expires_at >= before + timedelta(seconds=settings.JOB_LEASE_SECONDS)
    assert job.worker == "celery@host-a"
    assert job.started_at >= before
    assert (c.job_id, c.kind, c.payload, c.attempt, c.max_attempts) == (
        str(job.id),
        "diagnostics.sleep",
        {"seconds": 1},
        1,
        3,
    )
    assert attempts_of(job) == []  # an attempt's row is written when it ends


def test_a_duplicate_message_finds_nothing_to_claim(user):
    job = submitted(user)
    claim(job)

    assert lifecycle.job_claim(job_id=str(job.id), worker="worker-2") is None
    job.refresh_from_db()
    assert job.attempts == 1
    assert job.worker == "worker-1"
    assert attempts_of(job) == []


@pytest.mark.parametrize("status", [JobStatus.CANCELLED, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.RETRYING])
def test_a_job_that_is_not_queued_cannot_be_claimed(user, status):
    job = JobFactory(owner=user, status=status)

    assert lifecycle.job_claim(job_id=str(job.id), worker="w") is None
    job.refresh_from_db()
    assert job.status == status
    assert job.attempts == 0
    assert not JobAttempt.objects.filter(job=job).exists()


def test_a_job_that_does_not_exist_cannot_be_claimed(db):
    assert lifecycle.job_claim(job_id=str(uuid.uuid4()), worker="w") is None


def test_a_job_whose_run_at_is_still_ahead_cannot_be_claimed_yet(user):
    later = submitted(user, run_at=timezone.now() + timedelta(minutes=5))
    due = JobFactory(owner=user, run_at=timezone.now() - timedelta(seconds=1))

    assert lifecycle.job_claim(job_id=str(later.id), worker="w") is None
    assert lifecycle.job_claim(job_id=str(due.id), worker="w") is not None


def test_succeeding_records_the_result_and_closes_the_attempt(user):
    job = submitted(user)
    c = claim(job)

    assert lifecycle.job_succeed(claim=c, result={"made": 3}) is True

    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert job.result == {"made": 3}
    assert job.finished_at is not None
    assert job.lease_token is None
    assert job.progress_percent == 100.0
    attempt = JobAttempt.objects.get(job=job)
    assert attempt.outcome == JobAttempt.Outcome.SUCCEEDED
    assert attempt.finished_at == job.finished_at
    assert attempt.duration_ms is not None
    assert lifecycle.job_claim(job_id=str(job.id), worker="w") is None  # a succeeded job never runs again


def test_a_stale_attempt_cannot_write_over_the_attempt_that_replaced_it(user):
    job = submitted(user, "diagnostics.flaky", {"fail_times": 0})
    old = claim(job, worker="zombie")
    Job.objects.filter(id=job.id).update(status=JobStatus.QUEUED)  # its lease was handed on
    new = claim(job, worker="worker-2")
    assert lifecycle.job_report_progress(claim=new, percent=40, message="halfway")

    assert lifecycle.job_succeed(claim=old, result={"from": "zombie"}) is False
    assert lifecycle.job_fail_attempt(claim=old, failure=AttemptFailure("Boom", "late")) == "stale"
    assert lifecycle.job_heartbeat(claim=old) is False
    assert lifecycle.job_report_progress(claim=old, percent=99) is False

    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING
    assert str(job.lease_token) == new.lease_token
    assert job.worker == "worker-2"
    assert job.result is None
    assert job.error_type == ""
    assert (job.progress_percent, job.progress_message) == (40.0, "halfway")
    assert attempts_of(job) == []  # the zombie wrote nothing, not even its attempt
    assert lifecycle.job_heartbeat(claim=new) is True
    assert lifecycle.job_succeed(claim=new, result={"from": "worker-2"}) is True
    assert attempts_of(job) == [(2, "succeeded")]


def test_a_retryable_failure_waits_out_a_backoff_then_retries(user):
    job = submitted(user, "diagnostics.flaky", {"fail_times": 1})
    c = claim(job)
    before = timezone.now()

    status = lifecycle.job_fail_attempt(
        claim=c, failure=AttemptFailure("RetryableError", "try later", "Traceback: ...")
    )

    assert status == "retrying"
    job.refresh_from_db()
    assert job.status == JobStatus.RETRYING
    assert job.attempts == 1
    base = settings.JOB_RETRY_BASE_SECONDS
    assert before + timedelta(seconds=base / 2) <= job.run_at <= timezone.now() + timedelta(seconds=base)
    assert job.published_at is None
    assert job.lease_token is None
    assert (job.error_type, job.error_message, job.error_traceback) == ("RetryableError", "try later", "Traceback: ...")
    attempt = JobAttempt.objects.get(job=job)
    assert (attempt.outcome, attempt.error_type, attempt.error_message) == ("failed", "RetryableError", "try later")
    assert not DeadLetter.objects.exists()
    assert lifecycle.job_claim(job_id=str(job.id), worker="w") is None  # not before its backoff


def test_a_job_is_parked_as_a_dead_letter_after_its_last_attempt(user, django_capture_on_commit_callbacks):
    job = submitted(user, "diagnostics.flaky", {"fail_times": 9}, max_attempts=3)
    statuses = []
    for attempt in range(1, 4):
        c = claim(job)
        assert c.attempt == attempt
        with django_capture_on_commit_callbacks(execute=True):
            statuses.append(
                lifecycle.job_fail_attempt(claim=c, failure=AttemptFailure("RetryableError", f"failure {attempt}"))
            )
        if attempt < 3:
            requeue(job)

    assert statuses == ["retrying", "retrying", "failed"]
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.attempts == 3
    assert job.finished_at is not None
    letter = DeadLetter.objects.get(job=job)
    assert letter.state == DeadLetter.State.OPEN
    assert (letter.kind, letter.payload, letter.attempts) == ("diagnostics.flaky", {"fail_times": 9}, 3)
    assert letter.error_message == "failure 3"
    assert [(e["attempt"], e["outcome"], e["error_message"]) for e in letter.errors] == [
        (1, "failed", "failure 1"),
        (2, "failed", "failure 2"),
        (3, "failed", "failure 3"),
    ]
    mirrored = [m for m in broker_messages("dead_letter") if m["args"][1] == str(job.id)]
    assert mirrored == [
        {"task": "platform.dead_letter", "args": [letter.pk, str(job.id), "diagnostics.flaky"], "kwargs": {}}
    ]


def test_a_permanent_error_fails_the_job_at_once_with_a_dead_letter(user):
    job = submitted(user, "diagnostics.flaky", {"fail_times": 1, "permanent": True})
    c = claim(job)

    status = lifecycle.job_fail_attempt(claim=c, failure=AttemptFailure("PermanentError", "bad", permanent=True))

    assert status == "failed"
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.attempts == 1
    assert job.max_attempts == 5
    assert attempts_of(job) == [(1, "permanent")]
    letter = DeadLetter.objects.get(job=job)
    assert (letter.error_type, letter.attempts, len(letter.errors)) == ("PermanentError", 1, 1)


def test_cancelling_a_running_job_asks_and_the_attempt_ends_cancelled(user):
    job = submitted(user, "diagnostics.sleep", {"seconds": 60})
    c = claim(job)

    lifecycle.job_cancel(job=job)

    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING
    assert job.cancel_requested_at is not None
    assert lifecycle.job_cancel_requested(claim=c) is True
    assert lifecycle.job_fail_attempt(claim=c, failure=AttemptFailure("JobCancelled", "stop", cancelled=True)) == (
        "cancelled"
    )
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert job.finished_at is not None
    assert attempts_of(job) == [(1, "cancelled")]
    assert not DeadLetter.objects.exists()


def test_a_failure_after_a_cancel_request_cancels_instead_of_retrying(user):
    job = submitted(user, "diagnostics.flaky", {"fail_times": 3})
    c = claim(job)
    lifecycle.job_cancel(job=job)

    assert lifecycle.job_fail_attempt(claim=c, failure=AttemptFailure("RetryableError", "x")) == "cancelled"
    assert not DeadLetter.objects.exists()


def test_a_recorded_step_runs_once_and_a_retry_gets_its_result_back(user):
    job = submitted(user, "diagnostics.flaky", {"fail_times": 1})
    calls = []

    def charge() -> dict[str, Any]:
        calls.append(1)
        return {"charge_id": f"ch_{len(calls)}"}

    first = claim(job)
    assert lifecycle.job_step_once(claim=first, name="charge", effect=charge) == {"charge_id": "ch_1"}
    lifecycle.job_fail_attempt(claim=first, failure=AttemptFailure("RetryableError", "after the charge"))
    requeue(job)
    second = claim(job)

    assert lifecycle.job_step_once(claim=second, name="charge", effect=charge) == {"charge_id": "ch_1"}
    assert lifecycle.job_step_once(claim=second, name="refund-check", effect=lambda: None) is None
    assert len(calls) == 1
    step = JobStep.objects.get(job=job, name="charge")
    assert (step.attempt, step.result) == (1, {"charge_id": "ch_1"})


def test_a_published_job_crosses_the_broker_as_its_id_in_json(user, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        job = submitted(user, "diagnostics.sleep", {"seconds": 1}, priority="low")

    (message,) = [m for m in broker_messages("low") if m["args"] == [str(job.id)]]
    assert message["task"] == "diagnostics.sleep"
    assert message["kwargs"] == {}
    assert json_roundtrip(message["args"]) == [str(job.id)]
    # The worker's side accepts exactly what crossed the broker.
    c = lifecycle.job_claim(job_id=json_roundtrip(message["args"])[0], worker="w")
    assert c is not None
    assert json_roundtrip(c.payload) == {"seconds": 1}


# --- the reconciler ---------------------------------------------------------------------------


def test_the_reconciler_promotes_retries_whose_backoff_ended(user):
    now = timezone.now()
    due = JobFactory(
        owner=user,
        status=JobStatus.RETRYING,
        run_at=now - timedelta(seconds=1),
        published_at=now - timedelta(minutes=1),
    )
    waiting = JobFactory(owner=user, status=JobStatus.RETRYING, run_at=now + timedelta(minutes=1))
    running = JobFactory(owner=user, status=JobStatus.RUNNING, run_at=now - timedelta(minutes=1))

    assert reconciler.jobs_promote_due(now=now) == 1

    for job in (due, waiting, running):
        job.refresh_from_db()
    assert due.status == JobStatus.QUEUED
    assert due.published_at is None  # the relay publishes it next
    assert waiting.status == JobStatus.RETRYING
    assert running.status == JobStatus.RUNNING


def test_the_reconciler_gives_a_job_whose_lease_expired_another_attempt(user):
    job = submitted(user, "diagnostics.flaky", {"fail_times": 0})
    claim(job, worker="celery@dead-host")
    job.refresh_from_db()

    assert reconciler.jobs_expire_leases(now=job.lease_expires_at - timedelta(seconds=1)) == 0
    assert reconciler.jobs_expire_leases(now=job.lease_expires_at + timedelta(seconds=1)) == 1

    job.refresh_from_db()
    assert job.status == JobStatus.RETRYING
    assert job.attempts == 1
    assert job.lease_token is None
    assert job.run_at is not None
    assert job.error_type == "WorkerLost"
    attempt = JobAttempt.objects.get(job=job)
    assert attempt.outcome == JobAttempt.Outcome.LOST
    assert "celery@dead-host" in attempt.error_message
    assert not DeadLetter.objects.exists()


def test_the_reconciler_parks_a_job_whose_lease_expired_on_its_last_attempt(user):
    job = submitted(user, "diagnostics.noop", max_attempts=1)
    claim(job)
    job.refresh_from_db()

    assert reconciler.jobs_expire_leases(now=job.lease_expires_at + timedelta(seconds=1)) == 1

    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert attempts_of(job) == [(1, "lost")]
    letter = DeadLetter.objects.get(job=job)
    assert letter.error_type == "WorkerLost"
    assert letter.errors[0]["outcome"] == "lost"


def test_the_relay_publishes_a_committed_job_whose_publish_never_happened(user):
    now = timezone.now()
    old = JobFactory(
        owner=user,
        kind="diagnostics.noop",
        queue="low",
        created_at=now - timedelta(seconds=settings.OUTBOX_GRACE_SECONDS + 5),
    )
    fresh = JobFactory(owner=user, created_at=now)  # its own publish may still be on the way
    scheduled = JobFactory(owner=user, created_at=now - timedelta(hours=1), run_at=now + timedelta(hours=1))
    published = JobFactory(owner=user, created_at=now - timedelta(hours=1), published_at=now - timedelta(hours=1))

    assert reconciler.jobs_relay_unpublished(now=now) == 1

    old.refresh_from_db()
    assert old.published_at is not None
    assert [m["task"] for m in broker_messages("low") if m["args"] == [str(old.id)]] == ["diagnostics.noop"]
    for job in (fresh, scheduled):
        job.refresh_from_db()
        assert job.published_at is None
    published.refresh_from_db()
    assert published.published_at == now - timedelta(hours=1)


def test_the_relay_publishes_a_scheduled_job_once_it_is_due(user):
    now = timezone.now()
    job = submitted(user, run_at=now + timedelta(minutes=10))

    assert reconciler.jobs_relay_unpublished(now=now) == 0
    assert reconciler.jobs_relay_unpublished(now=now + timedelta(minutes=11)) == 1

    job.refresh_from_db()
    assert job.published_at is not None
    assert [m["args"] for m in broker_messages("default") if m["args"] == [str(job.id)]] == [[str(job.id)]]


def test_a_step_with_a_long_name_still_runs_only_once(user):
    job = submitted(user, "diagnostics.flaky", {"fail_times": 1})
    name = "send-invoice-" + "x" * 250
    calls = []
    first = claim(job)
    lifecycle.job_step_once(claim=first, name=name, effect=lambda: calls.append(1) or len(calls))
    lifecycle.job_fail_attempt(claim=first, failure=AttemptFailure("RetryableError", "after the step"))
    requeue(job)
    second = claim(job)

    lifecycle.job_step_once(claim=second, name=name, effect=lambda: calls.append(1) or len(calls))

    assert len(calls) == 1
