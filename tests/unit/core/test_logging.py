"""The JSON log line (apps.core.logging): one object per line carrying the request and the job it
is about, secrets redacted, and the request id every response carries."""

from __future__ import annotations

import json
import logging

import pytest

from apps.core import context
from apps.core.logging import JsonFormatter, redact


def format_record(message: str, *args: object) -> dict:
    record = logging.LogRecord("some.logger", logging.WARNING, __file__, 1, message, args, None)
    return json.loads(JsonFormatter().format(record))


def test_a_log_line_is_one_json_object_with_the_request_and_job_it_is_about():
    with context.job_context(job="job-1", kind="diagnostics.noop", request="req-1"):
        entry = format_record("attempt %s started", 2)
    assert entry["message"] == "attempt 2 started"
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "some.logger"
    assert (entry["job_id"], entry["kind"], entry["request_id"]) == ("job-1", "diagnostics.noop", "req-1")
    assert "job_id" not in format_record("outside any job")


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Token 46ebca04ce57ad43d76fc42f69bb08da70307bff",
        "token 46ebca04ce57ad43d76fc42f69bb",
        "connect password=hunter2 now",
        "url?secret=abc123",
    ],
)
def test_tokens_and_passwords_never_reach_a_log_line(text):
    assert redact(text).count("[redacted]") == 1
    for secret in ("46ebca04ce57ad43d76fc42f69bb", "hunter2", "abc123"):
        assert secret not in redact(text)


def test_every_response_carries_a_request_id_and_a_sane_one_from_the_client_is_kept(client, db):
    made_up = client.get("/healthz")["X-Request-ID"]
    assert len(made_up) == 32
    assert client.get("/healthz", HTTP_X_REQUEST_ID="abc-123")["X-Request-ID"] == "abc-123"
    # Anything that could forge log lines is replaced.
    replaced = client.get("/healthz", HTTP_X_REQUEST_ID='x"\n{"level":"ERROR"}')["X-Request-ID"]
    assert len(replaced) == 32
    assert replaced.isalnum()
