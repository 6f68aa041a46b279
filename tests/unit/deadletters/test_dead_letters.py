"""Dead letters: what a failed job leaves behind, and redrive and discard through the
services, the staff API, the admin's bulk actions and the `dead_letters` command. Failed jobs
are made through the real services, against the real database and the private Redis."""

from __future__ import annotations

import base64
import html
import json
from datetime import datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.deadletters.models import DeadLetter
from apps.deadletters.services import dead_letter_discard, dead_letter_redrive
from apps.jobs import lifecycle, reconciler
from apps.jobs.lifecycle import AttemptFailure
from apps.jobs.models import Job, JobAttempt, JobStatus
from apps.jobs.reconciler import redis_client
from tests.factories import UserFactory

LETTERS = "/api/v1/dead-letters"
ADMIN_LETTERS = "/admin/deadletters/deadletter/"
PAYLOADS: dict[str, dict[str, Any]] = {"diagnostics.flaky": {"fail_times": 9}, "diagnostics.noop": {}}
MISSING_ID = 987_654_321


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # admin_client makes a superuser with a password; the production hasher costs half a second.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def staff(db: Any) -> APIClient:
    member = UserFactory(username="staff-member", is_staff=True)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=member).key}")
    return client


def claim(job: Job) -> lifecycle.Claim:
    c = lifecycle.job_claim(job_id=str(job.id), worker="w")
    assert c is not None
    return c


def failed_job(owner: Any, kind: str = "diagnostics.flaky", *, error_type: str = "Boom", **options: Any) -> Job:
    """A job that failed permanently on its first attempt, parked by the real lifecycle."""
    job = lifecycle.job_submit(owner=owner, kind=kind, payload=PAYLOADS[kind], **options)
    failure = AttemptFailure(error_type, "it broke", "Traceback...", permanent=True)
    assert lifecycle.job_fail_attempt(claim=claim(job), failure=failure) == "failed"
    job.refresh_from_db()
    return job


def failed_twice(owner: Any) -> Job:
    """A max_attempts=2 job whose two attempts both failed with a retryable error."""
    job = lifecycle.job_submit(owner=owner, kind="diagnostics.flaky", payload={"fail_times": 9}, max_attempts=2)
    first = AttemptFailure("RetryableError", "first", "Traceback 1")
    assert lifecycle.job_fail_attempt(claim=claim(job), failure=first) == "retrying"
    # Let the backoff elapse (moved into the past, not waited for), then promote as the reconciler does.
    Job.objects.filter(id=job.id).update(run_at=timezone.now() - timedelta(milliseconds=1))
    assert reconciler.jobs_promote_due(now=timezone.now()) == 1
    second = AttemptFailure("RetryableError", "second", "Traceback 2")
    assert lifecycle.job_fail_attempt(claim=claim(job), failure=second) == "failed"
    job.refresh_from_db()
    return job


def letter_of(job: Job) -> DeadLetter:
    return DeadLetter.objects.get(job=job, state=DeadLetter.State.OPEN)


def published(job: Job) -> list[dict[str, Any]]:
    """The messages for this job waiting on its queue in the private Redis, decoded as a worker would."""
    messages = []
    for raw in redis_client().lrange(job.queue, 0, -1):
        message = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        if args == [str(job.id)]:
            messages.append({"task": message["headers"]["task"], "args": args})
    return messages


def ids(response: Any) -> list[int]:
    assert response.status_code == 200, response.content
    return [x["id"] for x in response.json()["results"]]


# --- what a failed job leaves behind -------------------------------------------------------------


def test_a_failed_job_has_exactly_one_open_letter_with_every_attempts_error(user):
    job = failed_twice(user)

    (letter,) = DeadLetter.objects.filter(job=job)
    assert letter.state == DeadLetter.State.OPEN
    assert (letter.kind, letter.payload, letter.attempts) == ("diagnostics.flaky", {"fail_times": 9}, 2)
    assert (letter.error_type, letter.error_message, letter.traceback) == ("RetryableError", "second", "Traceback 2")
    assert [(e["attempt"], e["worker"], e["outcome"], e["error_type"], e["error_message"]) for e in letter.errors] == [
        (1, "w", "failed", "RetryableError", "first"),
        (2, "w", "failed", "RetryableError", "second"),
    ]
    assert all(datetime.fromisoformat(e["at"]) <= letter.created_at for e in letter.errors)
    assert (letter.resolved_at, letter.resolved_by, letter.alerted_at) == (None, "", None)


def test_a_permanent_failure_is_parked_after_its_one_attempt(user):
    job = failed_job(user)

    letter = letter_of(job)
    assert job.attempts == 1
    assert (letter.error_type, letter.error_message, letter.traceback) == ("Boom", "it broke", "Traceback...")
    assert [(e["attempt"], e["outcome"]) for e in letter.errors] == [(1, "permanent")]


# --- redrive and discard -------------------------------------------------------------------------


def test_redriving_queues_the_job_again_with_a_fresh_allowance_and_its_history_kept(
    user, django_capture_on_commit_callbacks
):
    job = failed_twice(user)
    letter = letter_of(job)
    before = timezone.now()

    with django_capture_on_commit_callbacks(execute=True):
        resolution = dead_letter_redrive(letter_id=letter.pk, actor="ops-person")

    assert resolution.changed is True
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert (job.attempts, job.attempt_allowance, job.max_attempts) == (2, 2, 4)
    assert (job.error_type, job.error_message, job.error_traceback) == ("", "", "")
    assert (job.finished_at, job.run_at, job.result) == (None, None, None)
    assert job.published_at is not None
    assert published(job) == [{"task": "diagnostics.flaky", "args": [str(job.id)]}]
    assert list(JobAttempt.objects.filter(job=job).values_list("number", "error_message")) == [
        (1, "first"),
        (2, "second"),
    ]
    letter.refresh_from_db()
    assert letter.state == DeadLetter.State.REDRIVEN
    assert letter.resolved_at >= before
    assert letter.resolved_by == "ops-person"
    # The redriven job runs as attempt 3 of 4.
    again = claim(job)
    assert (again.attempt, again.max_attempts) == (3, 4)


def test_redriving_a_permanent_failure_adds_the_whole_allowance_again(user):
    job = failed_job(user)  # diagnostics.flaky allows 5 attempts

    dead_letter_redrive(letter_id=letter_of(job).pk)

    job.refresh_from_db()
    assert (job.status, job.attempts, job.max_attempts) == (JobStatus.QUEUED, 1, 6)


def test_redriving_twice_changes_and_publishes_nothing_the_second_time(user, django_capture_on_commit_callbacks):
    job = failed_job(user)
    letter = letter_of(job)
    with django_capture_on_commit_callbacks(execute=True):
        dead_letter_redrive(letter_id=letter.pk, actor="first")
    letter.refresh_from_db()

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        second = dead_letter_redrive(letter_id=letter.pk, actor="second")

    assert second.changed is False
    assert callbacks == []
    assert len(published(job)) == 1
    assert (second.letter.state, second.letter.resolved_by) == (DeadLetter.State.REDRIVEN, "first")
    assert second.letter.resolved_at == letter.resolved_at
    job.refresh_from_db()
    assert (job.status, job.max_attempts) == (JobStatus.QUEUED, 6)


def test_a_redriven_job_that_fails_again_gets_a_new_letter_with_its_whole_history(user):
    job = failed_twice(user)
    first_letter = letter_of(job)
    dead_letter_redrive(letter_id=first_letter.pk)

    lifecycle.job_fail_attempt(claim=claim(job), failure=AttemptFailure("Boom", "third", permanent=True))

    first_letter.refresh_from_db()
    assert first_letter.state == DeadLetter.State.REDRIVEN
    second_letter = letter_of(job)
    assert second_letter.pk != first_letter.pk
    assert second_letter.attempts == 3
    assert [e["error_message"] for e in second_letter.errors] == ["first", "second", "third"]


def test_discarding_keeps_the_job_failed_and_a_later_redrive_does_nothing(user, django_capture_on_commit_callbacks):
    job = failed_job(user)
    letter = letter_of(job)

    discarded = dead_letter_discard(letter_id=letter.pk, actor="ops-person")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        redriven = dead_letter_redrive(letter_id=letter.pk, actor="someone-else")

    assert (discarded.changed, redriven.changed) == (True, False)
    assert dead_letter_discard(letter_id=letter.pk).changed is False
    assert callbacks == []
    assert published(job) == []
    letter.refresh_from_db()
    assert (letter.state, letter.resolved_by) == (DeadLetter.State.DISCARDED, "ops-person")
    assert letter.resolved_at is not None
    job.refresh_from_db()
    assert (job.status, job.max_attempts, job.error_type) == (JobStatus.FAILED, 5, "Boom")


# --- the staff API -------------------------------------------------------------------------------


def test_the_api_lists_open_letters_newest_first(staff, user):
    jobs = [failed_job(user) for _ in range(3)]
    letters = [letter_of(job) for job in jobs]
    now = timezone.now()
    for age, letter in enumerate(letters):  # the first is the oldest
        DeadLetter.objects.filter(pk=letter.pk).update(created_at=now - timedelta(minutes=10 - age))
    dead_letter_discard(letter_id=letter_of(failed_job(user)).pk)  # the newest, but no longer open

    response = staff.get(LETTERS)

    assert ids(response) == [letters[2].pk, letters[1].pk, letters[0].pk]
    newest = response.json()["results"][0]
    assert newest == {
        "id": letters[2].pk,
        "job_id": str(jobs[2].id),
        "kind": "diagnostics.flaky",
        "state": "open",
        "attempts": 1,
        "payload": {"fail_times": 9},
        "error": {"type": "Boom", "message": "it broke"},
        "errors": letters[2].errors,
        "traceback": "Traceback...",
        "created_at": newest["created_at"],
        "resolved_at": None,
        "resolved_by": "",
    }


def test_the_api_filters_letters_by_kind_error_type_and_state(staff, user):
    flaky = letter_of(failed_job(user, "diagnostics.flaky"))
    noop = letter_of(failed_job(user, "diagnostics.noop"))
    other = letter_of(failed_job(user, "diagnostics.flaky", error_type="OtherError"))
    discarded = letter_of(failed_job(user, "diagnostics.noop"))
    dead_letter_discard(letter_id=discarded.pk)
    redriven = letter_of(failed_job(user, "diagnostics.flaky"))
    dead_letter_redrive(letter_id=redriven.pk)

    assert set(ids(staff.get(LETTERS))) == {flaky.pk, noop.pk, other.pk}
    assert ids(staff.get(LETTERS, {"kind": "diagnostics.noop"})) == [noop.pk]
    assert ids(staff.get(LETTERS, {"error_type": "OtherError"})) == [other.pk]
    assert set(ids(staff.get(LETTERS, {"error_type": "Boom", "kind": "diagnostics.flaky"}))) == {flaky.pk}
    assert ids(staff.get(LETTERS, {"state": "discarded"})) == [discarded.pk]
    assert ids(staff.get(LETTERS, {"state": "redriven"})) == [redriven.pk]
    bad = staff.get(LETTERS, {"state": "lost"})
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_input"


def test_the_api_shows_one_letter(staff, user):
    letter = letter_of(failed_job(user))

    response = staff.get(f"{LETTERS}/{letter.pk}")

    assert response.status_code == 200
    assert (response.json()["id"], response.json()["state"]) == (letter.pk, "open")


def test_the_api_refuses_clients_who_are_not_staff(api, user):
    letter = letter_of(failed_job(user))

    responses = [
        api.get(LETTERS),
        api.get(f"{LETTERS}/{letter.pk}"),
        api.post(f"{LETTERS}/{letter.pk}/redrive"),
        api.delete(f"{LETTERS}/{letter.pk}"),
    ]

    assert [r.status_code for r in responses] == [403] * 4
    assert {r.json()["error"]["code"] for r in responses} == {"permission_denied"}
    letter.refresh_from_db()
    assert letter.state == DeadLetter.State.OPEN


def test_the_api_asks_anonymous_callers_to_authenticate(db):
    response = APIClient().get(LETTERS)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert response.headers["WWW-Authenticate"] == "Token"


def test_the_api_answers_404_in_json_for_an_unknown_letter(staff):
    responses = [
        staff.get(f"{LETTERS}/{MISSING_ID}"),
        staff.post(f"{LETTERS}/{MISSING_ID}/redrive"),
        staff.delete(f"{LETTERS}/{MISSING_ID}"),
    ]

    assert [r.status_code for r in responses] == [404] * 3
    assert {r.json()["error"]["code"] for r in responses} == {"dead_letter_not_found"}


def test_a_redrive_over_the_api_answers_202_then_200_unchanged(staff, user, django_capture_on_commit_callbacks):
    job = failed_job(user)
    letter = letter_of(job)

    with django_capture_on_commit_callbacks(execute=True):
        first = staff.post(f"{LETTERS}/{letter.pk}/redrive")
        second = staff.post(f"{LETTERS}/{letter.pk}/redrive")

    assert first.status_code == 202
    assert (first.json()["changed"], first.json()["state"], first.json()["resolved_by"]) == (
        True,
        "redriven",
        "staff-member",
    )
    assert second.status_code == 200
    assert (second.json()["changed"], second.json()["state"]) == (False, "redriven")
    assert len(published(job)) == 1
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert ids(staff.get(LETTERS)) == []


def test_a_delete_over_the_api_discards_once(staff, user):
    job = failed_job(user)
    letter = letter_of(job)

    first = staff.delete(f"{LETTERS}/{letter.pk}")
    second = staff.delete(f"{LETTERS}/{letter.pk}")
    redrive = staff.post(f"{LETTERS}/{letter.pk}/redrive")

    assert (first.status_code, first.json()["changed"], first.json()["state"]) == (200, True, "discarded")
    assert (second.status_code, second.json()["changed"]) == (200, False)
    assert (redrive.status_code, redrive.json()["changed"], redrive.json()["state"]) == (200, False, "discarded")
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED


# --- the admin -----------------------------------------------------------------------------------


def test_the_admin_redrive_action_redrives_every_selected_letter(
    admin_client, user, django_capture_on_commit_callbacks
):
    jobs = [failed_job(user), failed_job(user, "diagnostics.noop")]
    letters = [letter_of(job) for job in jobs]
    discarded_job = failed_job(user)
    discarded = letter_of(discarded_job)
    dead_letter_discard(letter_id=discarded.pk)

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            ADMIN_LETTERS,
            {"action": "redrive", "_selected_action": [x.pk for x in [*letters, discarded]]},
            follow=True,
        )

    assert response.status_code == 200
    assert "2 redriven; 1 left as they were." in response.content.decode()
    for job, letter in zip(jobs, letters, strict=True):
        job.refresh_from_db()
        letter.refresh_from_db()
        assert job.status == JobStatus.QUEUED
        assert published(job) == [{"task": job.kind, "args": [str(job.id)]}]
        assert (letter.state, letter.resolved_by) == (DeadLetter.State.REDRIVEN, "admin")
    discarded_job.refresh_from_db()
    assert discarded_job.status == JobStatus.FAILED


def test_the_admin_discard_action_discards_every_selected_letter(admin_client, user):
    jobs = [failed_job(user), failed_job(user)]
    letters = [letter_of(job) for job in jobs]

    response = admin_client.post(
        ADMIN_LETTERS, {"action": "discard", "_selected_action": [x.pk for x in letters]}, follow=True
    )

    assert response.status_code == 200
    assert "2 discarded; 0 left as they were." in response.content.decode()
    for job, letter in zip(jobs, letters, strict=True):
        job.refresh_from_db()
        letter.refresh_from_db()
        assert job.status == JobStatus.FAILED
        assert (letter.state, letter.resolved_by) == (DeadLetter.State.DISCARDED, "admin")


def test_the_admin_letter_page_shows_every_attempts_error_and_the_traceback(admin_client, user):
    letter = letter_of(failed_twice(user))

    page = admin_client.get(f"{ADMIN_LETTERS}{letter.pk}/change/")

    assert page.status_code == 200
    content = page.content.decode()
    assert html.escape('"error_message": "first"') in content
    assert html.escape('"error_message": "second"') in content
    assert "Traceback 2" in content


# --- the management command ----------------------------------------------------------------------


def command(*args: str) -> str:
    out = StringIO()
    call_command("dead_letters", *args, stdout=out)
    return out.getvalue()


def test_the_command_lists_open_letters(user):
    job = failed_job(user)
    letter = letter_of(job)
    dead_letter_discard(letter_id=letter_of(failed_job(user, "diagnostics.noop")).pk)

    lines = command("list").splitlines()

    assert lines == [f"{letter.pk}\t{letter.created_at:%Y-%m-%d %H:%M:%S}\tdiagnostics.flaky\t{job.id}\tBoom: it broke"]
    assert command("list", "--kind", "diagnostics.noop") == ""


def test_the_command_redrives_letters_by_id(user):
    letter = letter_of(failed_job(user))

    assert command("redrive", str(letter.pk)) == "1 redriven, 0 already resolved\n"
    assert command("redrive", str(letter.pk)) == "0 redriven, 1 already resolved\n"
    letter.refresh_from_db()
    assert (letter.state, letter.resolved_by) == (DeadLetter.State.REDRIVEN, "manage.py")


def test_the_command_discards_letters_by_id(user):
    job = failed_job(user)
    letter = letter_of(job)

    assert command("discard", str(letter.pk)) == "1 discarded, 0 already resolved\n"
    letter.refresh_from_db()
    job.refresh_from_db()
    assert (letter.state, job.status) == (DeadLetter.State.DISCARDED, JobStatus.FAILED)


def test_the_command_redrives_every_open_letter_of_a_kind(user):
    noops = [letter_of(failed_job(user, "diagnostics.noop")) for _ in range(2)]
    flaky = letter_of(failed_job(user, "diagnostics.flaky"))

    assert command("redrive", "--all", "--kind", "diagnostics.noop") == "2 redriven, 0 already resolved\n"

    assert {x.state for x in DeadLetter.objects.filter(pk__in=[x.pk for x in noops])} == {DeadLetter.State.REDRIVEN}
    flaky.refresh_from_db()
    assert flaky.state == DeadLetter.State.OPEN
    assert command("discard", "--all") == "1 discarded, 0 already resolved\n"


def test_the_command_refuses_an_unknown_id_and_touches_nothing(user):
    letter = letter_of(failed_job(user))

    with pytest.raises(CommandError, match=f"no dead letter with id {MISSING_ID}"):
        command("redrive", str(letter.pk), str(MISSING_ID))

    letter.refresh_from_db()
    assert letter.state == DeadLetter.State.OPEN


def test_the_command_wants_ids_or_all(db):
    with pytest.raises(CommandError, match="give dead letter ids, or --all"):
        command("redrive")
