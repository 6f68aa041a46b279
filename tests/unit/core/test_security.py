"""Security as a client and an operator see it: someone else's ids answer 404 on every
endpoint, staff-only endpoints refuse everyone else, production settings pass Django's deploy
check, CORS is off unless configured, and no token reaches a log line."""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.core.logging import JsonFormatter
from apps.deadletters.models import DeadLetter
from apps.jobs.models import Job, JobStatus
from tests.factories import JobFactory, UserFactory

ROOT = Path(__file__).resolve().parents[3]


def client_for(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


@pytest.fixture
def strangers_job(db: Any) -> Job:
    """A finished job of another client, with a file in its result."""
    return JobFactory(
        owner=UserFactory(),
        kind="images.thumbnail",
        status=JobStatus.SUCCEEDED,
        result={"thumbnails": [{"size": 16, "file": "thumbnail-16.png"}]},
    )


# --- object-level authorization ---------------------------------------------------------------


def every_job_endpoint(job: Job) -> list[tuple[str, str, dict[str, Any]]]:
    base = f"/api/v1/jobs/{job.id}"
    return [
        ("get", base, {}),
        ("get", base, {"HTTP_IF_NONE_MATCH": "*"}),
        ("get", f"{base}?wait=5", {}),
        ("get", f"{base}?wait=5", {"HTTP_IF_NONE_MATCH": "*"}),
        ("post", f"{base}/cancel", {}),
        ("get", f"{base}/files/thumbnail-16.png", {}),
    ]


@pytest.mark.parametrize("index", range(6), ids=["detail", "conditional", "wait", "wait-conditional", "cancel", "file"])
def test_someone_elses_job_is_404_on_every_endpoint(api, strangers_job, index):
    method, path, headers = every_job_endpoint(strangers_job)[index]

    started = time.monotonic()
    response = getattr(api, method)(path, **headers)

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "job_not_found"
    assert str(strangers_job.id) not in response.content.decode()
    assert time.monotonic() - started < 4  # a wait (5 s asked) on someone else's job does not wait
    strangers_job.refresh_from_db()
    assert strangers_job.status == JobStatus.SUCCEEDED


def test_a_missing_job_and_someone_elses_answer_alike(api, strangers_job):
    missing = api.get("/api/v1/jobs/00000000-0000-4000-8000-000000000000")
    theirs = api.get(f"/api/v1/jobs/{strangers_job.id}")

    assert missing.status_code == theirs.status_code == 404
    assert missing.json() == theirs.json()


def test_someone_elses_job_never_appears_in_the_list(api, strangers_job):
    assert api.get("/api/v1/jobs").json()["results"] == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/jobs"),
        ("post", "/api/v1/jobs"),
        ("post", "/api/v1/jobs/batch"),
        ("get", "/api/v1/jobs/00000000-0000-4000-8000-000000000000"),
        ("post", "/api/v1/jobs/00000000-0000-4000-8000-000000000000/cancel"),
        ("get", "/api/v1/jobs/00000000-0000-4000-8000-000000000000/files/a.png"),
        ("post", "/api/v1/uploads"),
        ("get", "/api/v1/kinds"),
        ("get", "/api/v1/dead-letters"),
    ],
)
def test_every_api_endpoint_wants_a_token(db, method, path):
    response = getattr(APIClient(), method)(path)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


# --- staff only -------------------------------------------------------------------------------


@pytest.fixture
def letter(db: Any) -> DeadLetter:
    job = JobFactory(status=JobStatus.FAILED, error_type="Boom", error_message="boom")
    return DeadLetter.objects.create(job=job, kind=job.kind, payload={}, error_type="Boom", error_message="boom")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/dead-letters"),
        ("get", "/api/v1/dead-letters/{id}"),
        ("post", "/api/v1/dead-letters/{id}/redrive"),
        ("delete", "/api/v1/dead-letters/{id}"),
    ],
)
def test_dead_letter_endpoints_refuse_clients_who_are_not_staff(api, letter, method, path):
    response = getattr(api, method)(path.format(id=letter.pk))

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    letter.refresh_from_db()
    assert letter.state == DeadLetter.State.OPEN


def test_staff_may_use_the_dead_letter_endpoints(letter):
    staff = client_for(UserFactory(username="operator", is_staff=True))

    assert staff.get("/api/v1/dead-letters").status_code == 200
    assert staff.get(f"/api/v1/dead-letters/{letter.pk}").status_code == 200


# --- production settings ----------------------------------------------------------------------


def production_env(**extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SECURE_", "DJANGO_", "CORS_")) and key not in {"DEBUG", "ALLOWED_HOSTS"}
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DEBUG": "0",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "jobs.example.com",
            "SECURE_COOKIES": "1",
            "SECURE_SSL_REDIRECT": "1",
            "SECURE_HSTS_SECONDS": "31536000",
            "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
            "SECURE_HSTS_PRELOAD": "1",
            "LOG_FORMAT": "plain",
        }
    )
    env.update(extra)
    return env


def deploy_check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = (
        "import django; django.setup(); from django.core.management import call_command; "
        "call_command('check', '--deploy', '--fail-level', 'WARNING')"
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_production_settings_pass_the_deploy_check_with_no_warning():
    result = deploy_check(production_env())

    assert result.returncode == 0, result.stderr[-3000:]
    assert "no issues" in result.stdout + result.stderr


def test_the_deploy_check_does_catch_a_missing_hsts():
    result = deploy_check(production_env(SECURE_HSTS_SECONDS="0"))

    assert result.returncode != 0
    assert "security.W004" in result.stderr


# --- CORS -------------------------------------------------------------------------------------


def preflight(client: APIClient, origin: str) -> Any:
    return client.options(
        "/api/v1/jobs",
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type, idempotency-key",
    )


def test_cors_is_off_unless_origins_are_configured(db):
    response = preflight(APIClient(), "https://app.example.com")

    assert "access-control-allow-origin" not in response


def test_a_configured_origin_may_call_the_api_from_a_browser(db, settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example.com"]

    allowed = preflight(APIClient(), "https://app.example.com")
    other = preflight(APIClient(), "https://evil.example.net")

    assert allowed.status_code == 200
    assert allowed["access-control-allow-origin"] == "https://app.example.com"
    assert "idempotency-key" in allowed["access-control-allow-headers"]
    assert "access-control-allow-origin" not in other


def test_a_browser_client_may_read_the_polling_headers(api, user, settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example.com"]
    job = JobFactory(owner=user)

    response = api.get(f"/api/v1/jobs/{job.id}", HTTP_ORIGIN="https://app.example.com")

    exposed = {h.strip().lower() for h in response["access-control-expose-headers"].split(",")}
    assert {"etag", "retry-after", "location"} <= exposed


# --- secrets stay out of the logs -------------------------------------------------------------


@pytest.mark.parametrize("debug", [False, True], ids=["production", "debug"])
def test_no_token_reaches_any_log_record(db, caplog, django_capture_on_commit_callbacks, settings, monkeypatch, debug):
    settings.DEBUG = debug  # with DEBUG, Django would log SQL with its parameters
    user = UserFactory()
    token = Token.objects.create(user=user).key
    wrong = "f" * 40
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    caplog.set_level(logging.DEBUG)  # the root; each logger keeps the level LOGGING gave it

    with django_capture_on_commit_callbacks(execute=True):
        job_id = client.post("/api/v1/jobs", {"kind": "diagnostics.noop", "payload": {}}, format="json").json()["id"]
        client.post("/api/v1/jobs/batch", {"jobs": [{"kind": "no.such.kind"}]}, format="json")
        client.post("/api/v1/jobs", {"kind": "diagnostics.sleep", "payload": {"seconds": -1}}, format="json")
        client.post("/api/v1/jobs", b"{not json", content_type="application/json")
    client.get(f"/api/v1/jobs/{job_id}")
    client.get(f"/api/v1/jobs/{job_id}?wait=abc")
    client.get("/api/v1/jobs/00000000-0000-4000-8000-000000000000")
    client.get("/api/v1/dead-letters")
    client.post("/api/v1/uploads", {"file": "x"}, format="json")
    APIClient().get("/api/v1/jobs", HTTP_AUTHORIZATION=f"Token {wrong}")
    APIClient().get("/api/v1/jobs", HTTP_AUTHORIZATION=f"Bearer {token}")
    # A server error logs an ERROR with its traceback, and Django logs the failed request.
    monkeypatch.setattr("apps.jobs.lifecycle.job_submit", lambda **kwargs: 1 / 0)
    failed = client.post("/api/v1/jobs", {"kind": "diagnostics.noop", "payload": {}}, format="json")

    assert failed.status_code == 500
    assert token not in failed.content.decode()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors, "the server error was not logged: the test would prove little"
    formatter = JsonFormatter()
    for record in caplog.records:
        seen = [formatter.format(record), str(record.args), record.exc_text or ""]
        text = " ".join([*seen, *(str(v) for v in vars(record).values())])
        assert token not in text, f"the token leaked in {record.name}: {record.getMessage()[:200]}"
        assert wrong not in text, f"a presented token leaked in {record.name}: {record.getMessage()[:200]}"
    assert settings.SECRET_KEY not in caplog.text
