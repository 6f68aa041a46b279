"""Tracing across real processes (issue 20, item 2): gunicorn as the Procfile runs it and a
real Celery worker, both exporting over OTLP/HTTP to a collector this test runs. One trace
goes from the API request through the publish to the worker's attempt and, for a job with a
callback_url, to the webhook delivery's attempt and the POST it sends.

The batch processors wait a minute between exports here, so every span the test sees was
exported when its process stopped: a process that exits keeps its last spans."""

from __future__ import annotations

import gzip
import http.client
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from rest_framework.authtoken.models import Token

from apps.jobs.models import Job, JobStatus
from tests.integration.helpers import wait_terminal
from tests.integration.test_web_server import start_web as start_web_process
from tests.processes import CeleryProcess, wait_for

pytestmark = pytest.mark.integration

SERVER, CONSUMER = 2, 5  # opentelemetry.proto.trace.v1.Span.SpanKind


@dataclass(frozen=True)
class ExportedSpan:
    service: str
    scope: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]

    @property
    def db_system(self) -> str:
        return str(self.attributes.get("db.system") or self.attributes.get("db.system.name") or "")


def _value(any_value: Any) -> Any:
    which = any_value.WhichOneof("value")
    if which == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    return getattr(any_value, which) if which else None


class Collector:
    """An OTLP/HTTP receiver on 127.0.0.1: decodes each ExportTraceServiceRequest and keeps its
    spans, as a collector would, standing in for an in-memory exporter across processes."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

        collector = self
        self.lock = threading.Lock()
        self.received: list[ExportedSpan] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = trace_service_pb2.ExportTraceServiceRequest()
                request.ParseFromString(body)
                collector.keep(request)
                answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def keep(self, request: Any) -> None:
        spans = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append(
                        ExportedSpan(
                            service=str(resource.get("service.name", "")),
                            scope=scope_spans.scope.name,
                            name=span.name,
                            kind=span.kind,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            attributes={a.key: _value(a.value) for a in span.attributes},
                        )
                    )
        with self.lock:
            self.received.extend(spans)

    def spans(self) -> list[ExportedSpan]:
        with self.lock:
            return list(self.received)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    c.stop()


def http_request(port: int, method: str, path: str, body: Any = None, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class _Environment:
    """A fixed environment in the shape test_web_server.start_web asks its platform for."""

    def __init__(self, env: dict[str, str]) -> None:
        self._env = env

    def env(self, **more: str) -> dict[str, str]:
        return {**self._env, **more}


def start_web(env: dict[str, str]) -> tuple[CeleryProcess, int]:
    """gunicorn as the Procfile runs it, with the test's tracing environment."""
    return start_web_process(_Environment(env), "web-tracing")


def parent_chain(span: ExportedSpan, spans: list[ExportedSpan]) -> list[ExportedSpan]:
    """The span and its ancestors up to the trace's root; fails where a parent is missing."""
    by_id = {s.span_id: s for s in spans if s.trace_id == span.trace_id}
    chain = [span]
    while chain[-1].parent_id:
        parent = by_id.get(chain[-1].parent_id)
        assert parent is not None, f"span {chain[-1].name} ({chain[-1].service}) lost its parent {chain[-1].parent_id}"
        chain.append(parent)
    return chain


def test_one_trace_runs_from_the_api_request_through_the_attempt_to_the_webhook(platform, collector, receiver):
    env = platform.env(
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.url,
        # Nothing is exported before a process stops: the shutdown flush must carry it all.
        OTEL_BSP_SCHEDULE_DELAY="60000",
        WEBHOOK_ALLOW_PRIVATE="1",
    )
    user = get_user_model().objects.create_user("tracing-client", password="x")
    token = Token.objects.create(user=user).key
    # As bin/up runs them: the job on a prefork worker, its webhook on worker-io's threads.
    worker = platform.worker(env=env, queues="high,default,low")
    worker_io = platform.worker_io(env=env, concurrency=4)
    web, port = start_web(env)
    try:
        status, body = http_request(
            port,
            "POST",
            "/api/v1/jobs",
            {"kind": "diagnostics.noop", "payload": {}, "callback_url": receiver.url},
            {"Authorization": f"Token {token}"},
        )
        assert status == 202, body
        job_id = json.loads(body)["id"]
        wait_for(receiver.posts, timeout=30, what="the webhook POST")
        delivery = wait_for(
            lambda: Job.objects.filter(kind="webhooks.deliver", payload__job_id=job_id).first(),
            timeout=30,
            what="the delivery job",
        )
        jobs = wait_terminal([job_id, delivery.id], timeout=30)
        assert {job.status for job in jobs.values()} == {JobStatus.SUCCEEDED}
    finally:
        web.stop()
        worker.stop()
        worker_io.stop()

    def settled() -> list[ExportedSpan] | None:
        spans = collector.spans()
        names = {s.name for s in spans}
        return spans if {"run/diagnostics.noop", "run/webhooks.deliver"} <= names else None

    spans = wait_for(settled, timeout=20, what=f"the attempt spans (logs: {worker.log_path}, {worker_io.log_path})")
    [request_span] = [s for s in spans if s.kind == SERVER and s.attributes.get("job.id") == job_id]
    assert request_span.service == "jobplatform-web"
    assert request_span.attributes["job.kind"] == "diagnostics.noop"
    assert request_span.parent_id == ""  # the trace starts at the request
    trace = [s for s in spans if s.trace_id == request_span.trace_id]

    [attempt] = [s for s in trace if s.name == "run/diagnostics.noop"]
    assert attempt.service == "jobplatform-worker"
    assert attempt.kind == CONSUMER
    assert attempt.parent_id == request_span.span_id  # published from inside the request
    assert (attempt.attributes["job.id"], attempt.attributes["job.kind"]) == (job_id, "diagnostics.noop")
    assert attempt.attributes["job.attempt"] == 1

    # The hot paths' own statements (apps.core.db.prepared_cursor) are traced as well.
    under_request = {(s.db_system, s.name) for s in trace if s.parent_id == request_span.span_id}
    assert ("postgresql", "INSERT") in under_request, f"no psycopg span of the submit's INSERT: {under_request}"
    assert ("redis", "EVALSHA") in under_request, f"no redis span of the publish: {under_request}"
    under_attempt = {(s.db_system, s.name) for s in trace if s.parent_id == attempt.span_id}
    assert ("postgresql", "UPDATE") in under_attempt, f"no psycopg span of the claim: {under_attempt}"

    [delivery_attempt] = [s for s in trace if s.name == "run/webhooks.deliver"]
    assert delivery_attempt.attributes["job.id"] == str(delivery.id)
    assert delivery_attempt.attributes["job.kind"] == "webhooks.deliver"
    assert delivery_attempt.service == "jobplatform-worker"  # worker-io, whose threads trace too
    assert parent_chain(delivery_attempt, spans)[-1] == request_span
    assert attempt in parent_chain(delivery_attempt, spans)  # submitted by the job's attempt

    [post] = receiver.posts()
    version, trace_id, span_id, flags = post.headers["traceparent"].split("-")
    assert (version, trace_id) == ("00", request_span.trace_id)
    assert int(flags, 16) & 1  # sampled
    assert span_id == delivery_attempt.span_id


def test_a_job_held_in_postgresql_stays_in_the_trace_of_the_request_that_submitted_it(platform, collector):
    """A job of a paused queue waits unpublished; the resume (another request, in whichever
    web process) publishes it, and its attempt is still a child of the submitting request."""
    env = platform.env(OTEL_EXPORTER_OTLP_ENDPOINT=collector.url, OTEL_BSP_SCHEDULE_DELAY="60000")
    client = Token.objects.create(user=get_user_model().objects.create_user("held-client")).key
    staff = Token.objects.create(user=get_user_model().objects.create_user("held-staff", is_staff=True)).key
    worker = platform.worker(env=env, queues="high,default,low")
    web, port = start_web(env)
    try:
        assert (
            http_request(port, "POST", "/api/v1/queues/default/pause", {}, {"Authorization": f"Token {staff}"})[0]
            == 200
        )
        # Each web process reads the pauses at most a second late (apps.jobs.pauses); a job
        # published before its process saw the pause is handed back unclaimed all the same.
        time.sleep(1.2)
        status, body = http_request(
            port,
            "POST",
            "/api/v1/jobs",
            {"kind": "diagnostics.noop", "payload": {}},
            {"Authorization": f"Token {client}"},
        )
        assert status == 202, body
        job_id = json.loads(body)["id"]
        wait_for(
            lambda: Job.objects.filter(id=job_id, published_at__isnull=True).exists(),
            timeout=10,
            what="the job to wait unpublished",
        )
        assert (
            http_request(port, "POST", "/api/v1/queues/default/resume", {}, {"Authorization": f"Token {staff}"})[0]
            == 200
        )
        [job] = wait_terminal([job_id], timeout=30).values()
        assert job.status == JobStatus.SUCCEEDED
    finally:
        web.stop()
        worker.stop()

    def settled() -> list[ExportedSpan] | None:
        spans = collector.spans()
        return spans if any(s.attributes.get("job.id") == job_id and s.kind == CONSUMER for s in spans) else None

    spans = wait_for(settled, timeout=20, what=f"the attempt span (log: {worker.log_path})")
    [submit] = [s for s in spans if s.kind == SERVER and s.attributes.get("job.id") == job_id]
    [resume] = [s for s in spans if s.kind == SERVER and "resume" in str(s.attributes.get("http.route", s.name))]
    [attempt] = [s for s in spans if s.kind == CONSUMER and s.attributes.get("job.id") == job_id]
    assert attempt.trace_id == submit.trace_id != resume.trace_id
    assert attempt.parent_id == submit.span_id


def test_jobs_beat_publishes_later_stay_in_the_trace_of_the_request_that_submitted_them(platform, collector):
    """A job to run later waits in PostgreSQL, and a failed attempt's retry waits out its
    backoff there: beat's dispatcher publishes each when due, outside any request, and every
    attempt is still a child of the request that submitted its job."""
    env = platform.env(OTEL_EXPORTER_OTLP_ENDPOINT=collector.url, OTEL_BSP_SCHEDULE_DELAY="60000")
    client = Token.objects.create(user=get_user_model().objects.create_user("later-client")).key
    worker = platform.worker(env=env, queues="high,default,low")
    beat = platform.beat(**{k: env[k] for k in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_BSP_SCHEDULE_DELAY")})
    web, port = start_web(env)

    def submit(kind: str, payload: dict[str, Any], **extra: Any) -> str:
        status, body = http_request(
            port,
            "POST",
            "/api/v1/jobs",
            {"kind": kind, "payload": payload, **extra},
            {"Authorization": f"Token {client}"},
        )
        assert status == 202, body
        return json.loads(body)["id"]

    try:
        later = submit("diagnostics.noop", {}, run_at=(timezone.now() + timedelta(seconds=2)).isoformat())
        assert Job.objects.get(id=later).published_at is None  # it waits in PostgreSQL
        retried = submit("diagnostics.flaky", {"fail_times": 1})
        jobs = wait_terminal([later, retried], timeout=30)
        assert {job.status for job in jobs.values()} == {JobStatus.SUCCEEDED}
        assert jobs[retried].attempts == 2
    finally:
        web.stop()
        worker.stop()
        beat.stop()

    def attempts(spans: list[ExportedSpan], job_id: str) -> list[ExportedSpan]:
        return [s for s in spans if s.kind == CONSUMER and s.attributes.get("job.id") == job_id]

    def settled() -> list[ExportedSpan] | None:
        spans = collector.spans()
        return spans if len(attempts(spans, later)) == 1 and len(attempts(spans, retried)) == 2 else None

    spans = wait_for(settled, timeout=20, what=f"the attempt spans (logs: {worker.log_path}, {beat.log_path})")
    for job_id, count in ((later, 1), (retried, 2)):
        [submitted] = [s for s in spans if s.kind == SERVER and s.attributes.get("job.id") == job_id]
        runs = sorted(attempts(spans, job_id), key=lambda s: s.attributes["job.attempt"])
        assert [s.attributes["job.attempt"] for s in runs] == list(range(1, count + 1))
        assert all(s.trace_id == submitted.trace_id and s.parent_id == submitted.span_id for s in runs), job_id
