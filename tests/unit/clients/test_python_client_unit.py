"""The Python client's pure parts (clients/python): webhook verification against what the
platform signs, the API's errors as typed exceptions, Retry-After, and the retry and long-poll
loops over a scripted transport (the real stack is in tests/integration/test_python_client.py)."""

from __future__ import annotations

import email.utils
import json
import sys
import time
from pathlib import Path

import httpx
import pytest

from apps.webhooks import signing

# The client is its own package (clients/python), not installed into the project's venv.
CLIENT_SRC = str(Path(__file__).resolve().parents[3] / "clients" / "python" / "src")
if CLIENT_SRC not in sys.path:
    sys.path.insert(0, CLIENT_SRC)

import jobplatform_client as jp  # noqa: E402
from jobplatform_client import _core  # noqa: E402
from jobplatform_client.errors import error_for  # noqa: E402

SECRET = "whsec-test"
NOW = 1_795_313_022
BODY = json.dumps({"event": "job.finished", "job": {"id": "j1", "status": "succeeded"}}).encode()


def signed_headers(body: bytes = BODY, secret: str = SECRET, ts: int = NOW) -> dict[str, str]:
    return {
        "Webhook-Id": "d1",
        "Webhook-Timestamp": str(ts),
        "Webhook-Signature": signing.signature_header(secret, ts, body),
    }


class TestVerifyWebhook:
    def test_a_body_the_platform_signed_verifies_and_is_returned_parsed(self):
        assert jp.verify_webhook(BODY, signed_headers(), SECRET, now=NOW + 10) == json.loads(BODY)

    def test_headers_match_in_any_case_and_any_of_several_signatures_is_enough(self):
        headers = {k.lower(): v for k, v in signed_headers().items()}
        headers["webhook-signature"] = "v1=" + "0" * 64 + ", " + headers["webhook-signature"]
        assert jp.verify_webhook(BODY.decode(), headers, SECRET, now=NOW)["job"]["id"] == "j1"

    @pytest.mark.parametrize(
        ("body", "headers", "now"),
        [
            (BODY + b" ", signed_headers(), NOW),  # the body changed
            (BODY, signed_headers(secret="other"), NOW),  # another secret
            (BODY, signed_headers(), NOW + 301),  # stale: a replay
            (BODY, signed_headers(), NOW - 301),  # from the future
            (BODY, {"Webhook-Timestamp": str(NOW)}, NOW),  # no signature
            (BODY, {**signed_headers(), "Webhook-Timestamp": "soon"}, NOW),
            (BODY, {**signed_headers(), "Webhook-Signature": "v2=" + signing.sign(SECRET, NOW, BODY)}, NOW),
        ],
    )
    def test_anything_else_is_refused(self, body, headers, now):
        with pytest.raises(jp.InvalidSignature):
            jp.verify_webhook(body, headers, SECRET, now=now)

    def test_it_agrees_with_the_platforms_own_check(self):
        headers = signed_headers()
        for now in (NOW, NOW + 299, NOW + 301):
            ours = signing.verify_signature(
                SECRET, headers["Webhook-Timestamp"], BODY, headers["Webhook-Signature"], now=now
            )
            try:
                jp.verify_webhook(BODY, headers, SECRET, now=now)
                theirs = True
            except jp.InvalidSignature:
                theirs = False
            assert ours == theirs


class TestErrors:
    @pytest.mark.parametrize(
        ("status", "cls"),
        [
            (400, jp.InvalidInput),
            (401, jp.AuthenticationFailed),
            (403, jp.PermissionDenied),
            (404, jp.NotFound),
            (409, jp.Conflict),
            (413, jp.PayloadTooLarge),
            (422, jp.IdempotencyKeyReused),
            (429, jp.RateLimited),
            (503, jp.Unavailable),
            (500, jp.ServerError),
            (418, jp.ApiError),
        ],
    )
    def test_each_status_has_its_class_carrying_code_message_and_details(self, status, cls):
        body = {"error": {"code": "some_code", "message": "Nope.", "details": {"field": ["bad"]}}}
        error = error_for(status, body, retry_after=2.0)
        assert type(error) is cls
        assert isinstance(error, jp.ApiError)
        assert (error.status, error.code, error.message, error.details, error.retry_after) == (
            status,
            "some_code",
            "Nope.",
            {"field": ["bad"]},
            2.0,
        )

    def test_a_body_that_is_not_the_apis_error_json_still_gives_a_typed_error(self):
        error = error_for(502, "<html>Bad gateway</html>")
        assert (type(error), error.code, error.message) == (jp.ServerError, "", "<html>Bad gateway</html>")

    def test_overloaded_is_rate_limited_and_wait_timeout_is_a_timeout_error(self):
        assert jp.Overloaded is jp.RateLimited
        assert issubclass(jp.WaitTimeout, TimeoutError)


class TestRetryAfter:
    def test_seconds_or_an_http_date(self):
        assert _core.parse_retry_after("3") == 3.0
        assert _core.parse_retry_after(email.utils.formatdate(NOW + 5, usegmt=True), now=NOW) == pytest.approx(5)
        assert _core.parse_retry_after("whenever") is None
        assert _core.parse_retry_after(None) is None

    def test_waits_are_bounded_and_back_off_without_a_header(self):
        assert _core.retry_delay(3600, 0) == _core.MAX_RETRY_AFTER
        assert [_core.retry_delay(None, n) for n in range(3)] == [0.5, 1.0, 2.0]


def scripted_client(answers: list, seen: list[httpx.Request]) -> jp.Client:
    """A client whose server answers `answers` in turn; an answer may be (response, seconds
    the server holds the request first)."""

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers.pop(0)
        if isinstance(answer, tuple):
            answer, held = answer
            time.sleep(held)
        return answer

    http = httpx.Client(base_url="http://api.test/api/v1/", transport=httpx.MockTransport(handler))
    client = jp.Client("http://api.test", http=http)
    client.sleeps = []
    client._sleep = client.sleeps.append
    return client


JOB = {"id": "j1", "kind": "diagnostics.noop", "status": "queued", "progress": {"percent": None, "message": ""}}


def test_a_503_is_retried_with_the_same_idempotency_key_after_retry_after():
    seen: list[httpx.Request] = []
    answers = [
        httpx.Response(
            503, json={"error": {"code": "broker_unavailable", "message": "x"}}, headers={"Retry-After": "4"}
        ),
        httpx.Response(202, json=JOB),
    ]
    client = scripted_client(answers, seen)
    assert client.submit("diagnostics.noop", {}).id == "j1"
    assert client.sleeps == [4.0]
    assert len({r.headers["Idempotency-Key"] for r in seen}) == 1
    assert json.loads(seen[0].content) == {"kind": "diagnostics.noop", "payload": {}}


def test_retries_stop_at_max_retries_with_the_typed_error():
    seen: list[httpx.Request] = []
    throttled = {"error": {"code": "throttled", "message": "Slow down."}}
    client = scripted_client([httpx.Response(429, json=throttled, headers={"Retry-After": "1"})] * 4, seen)
    with pytest.raises(jp.RateLimited) as limited:
        client.get("j1")
    assert (len(seen), client.sleeps, limited.value.retry_after) == (4, [1.0, 1.0, 1.0], 1.0)


def test_wait_long_polls_with_the_etag_and_takes_304_as_no_change():
    seen: list[httpx.Request] = []
    answers = [
        (httpx.Response(304, headers={"ETag": 'W/"a"'}), 0.6),  # held, then nothing changed
        httpx.Response(200, json={**JOB, "status": "running"}, headers={"ETag": 'W/"b"'}),
        httpx.Response(200, json={**JOB, "status": "succeeded", "result": {}}, headers={"ETag": 'W/"c"'}),
    ]
    client = scripted_client(answers, seen)
    job = jp.Job(client, dict(JOB), etag='W/"a"')
    changes: list[str] = []
    assert job.wait(timeout=60, on_change=lambda j: changes.append(j.status)).result == {}
    assert changes == ["running", "succeeded"]
    assert [r.headers["If-None-Match"] for r in seen] == ['W/"a"', 'W/"a"', 'W/"b"']
    assert all(r.url.params["wait"] == "30" for r in seen)
    assert client.sleeps == []  # held by the server, never a sleep loop


def test_a_server_that_cannot_hold_the_poll_is_asked_again_only_after_retry_after():
    """A web process with no waiting slot left answers at once; the client must not spin."""
    seen: list[httpx.Request] = []
    unchanged = httpx.Response(304, headers={"ETag": 'W/"a"', "Retry-After": "2"})
    done = httpx.Response(200, json={**JOB, "status": "succeeded"}, headers={"ETag": 'W/"b"'})
    client = scripted_client([unchanged, unchanged, done], seen)
    assert jp.Job(client, dict(JOB), etag='W/"a"').wait(timeout=60).status == "succeeded"
    assert client.sleeps == [2.0, 2.0]


def test_server_sent_events_are_parsed_into_events_with_their_ids():
    parser = _core.SSEParser()
    lines = ["retry: 1000", "", "event: job", 'id: W/"1"', 'data: {"id": "j1",', 'data: "status": "queued"}', ""]
    lines += [": keep-alive", "event: end", "data: {}", ""]
    events = list(parser.feed(lines))
    assert events == [("job", 'W/"1"', '{"id": "j1",\n"status": "queued"}'), ("end", None, "{}")]
    assert parser.last_id == 'W/"1"'


def sse(*events: tuple[str, str, dict]) -> bytes:
    return b"retry: 1000\n\n" + b"".join(
        f"event: {name}\nid: {tag}\ndata: {json.dumps(data)}\n\n".encode() for name, tag, data in events
    )


def test_watch_reconnects_with_last_event_id_until_the_end_event():
    seen: list[httpx.Request] = []
    headers = {"Content-Type": "text/event-stream"}
    answers = [
        (httpx.Response(200, content=sse(("job", "t1", {**JOB, "status": "running"})), headers=headers), 0.6),
        httpx.Response(
            200, content=sse(("job", "t2", {**JOB, "status": "succeeded"}), ("end", "", {})), headers=headers
        ),
    ]
    client = scripted_client(answers, seen)
    assert [state["status"] for state in client.watch("j1")] == ["running", "succeeded"]
    assert [r.headers.get("Last-Event-ID") for r in seen] == [None, "t1"]
    assert client.sleeps == []
