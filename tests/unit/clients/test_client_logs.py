"""The Python client's job.logs() (clients/python) against the platform's own API, served
in-process through WSGI: every page, in order, and one attempt's lines."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
from django.core.wsgi import get_wsgi_application
from django.utils import timezone
from rest_framework.authtoken.models import Token

from apps.jobs.models import JobLogLine
from tests.factories import JobFactory, UserFactory

CLIENT_SRC = str(Path(__file__).resolve().parents[3] / "clients" / "python" / "src")
if CLIENT_SRC not in sys.path:
    sys.path.insert(0, CLIENT_SRC)

import jobplatform_client as jp  # noqa: E402


def job_with_lines():
    owner = UserFactory()
    job = JobFactory(owner=owner, attempts=2)
    JobLogLine.objects.bulk_create(
        JobLogLine(job=job, attempt=a, seq=s, at=timezone.now(), level="INFO", logger="t", message=f"{a}.{s}")
        for a in (1, 2)
        for s in (1, 2, 3)
    )
    return job, Token.objects.create(user=owner).key


def test_job_logs_reads_every_page_of_the_jobs_lines(transactional_db):
    job, key = job_with_lines()
    http = httpx.Client(
        base_url="http://testserver/api/v1/",
        transport=httpx.WSGITransport(app=get_wsgi_application()),
        headers={"Authorization": f"Token {key}"},
    )
    with jp.Client("http://testserver", http=http) as client:
        handle = client.get(str(job.id))

        assert [line["message"] for line in handle.logs(page_size=2)] == ["1.1", "1.2", "1.3", "2.1", "2.2", "2.3"]
        assert [(line["attempt"], line["seq"]) for line in handle.logs(attempt=2)] == [(2, 1), (2, 2), (2, 3)]


def test_the_async_job_logs_reads_them_too(transactional_db):
    job, key = job_with_lines()

    async def read() -> list[str]:
        http = httpx.AsyncClient(
            base_url="http://testserver/api/v1/",
            transport=httpx.MockTransport(_through_wsgi),
            headers={"Authorization": f"Token {key}"},
        )
        async with jp.AsyncClient("http://testserver", http=http) as client:
            handle = await client.get(str(job.id))
            return [line["message"] async for line in handle.logs(attempt=1, page_size=2)]

    assert asyncio.run(read()) == ["1.1", "1.2", "1.3"]


_wsgi = httpx.Client(base_url="http://testserver", transport=httpx.WSGITransport(app=get_wsgi_application()))


async def _through_wsgi(request: httpx.Request) -> httpx.Response:
    """An async transport for the test: the same request, answered by the WSGI app in a thread
    (Django's database calls refuse to run in the event loop's)."""

    def call() -> httpx.Response:
        return _wsgi.request(request.method, request.url, headers=request.headers, content=request.content)

    answer = await asyncio.to_thread(call)
    return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)
