"""The asynchronous client: `AsyncClient(url, token=...)`, the same calls as `Client`, awaited."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, Callable

import httpx

from . import _core
from .client import JobSpec
from .errors import ConnectionFailed, WaitTimeout


class AsyncJob(_core.JobData):
    """`Job` for the async client: `await job.wait()`, `await job.refresh()`, ..."""

    def __init__(self, client: AsyncClient, data: dict, etag: str | None = None) -> None:
        super().__init__(data, etag)
        self._client = client

    async def refresh(self) -> AsyncJob:
        headers = {"If-None-Match": self.etag} if self.etag else None
        self._update(await self._client._request("GET", f"jobs/{self.id}", headers=headers, idempotent=True))
        return self

    async def wait(self, timeout: float | None = None, on_change: Callable[[AsyncJob], Any] | None = None) -> AsyncJob:
        """As `Job.wait`: long-polls with the ETag until the job has finished or `timeout` passes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done:
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"job {self.id} is still {self.status} after {timeout} s", self)
            seconds = _core.wait_seconds(deadline)
            headers = {"If-None-Match": self.etag} if self.etag else None
            before, started = self.data, time.monotonic()
            response = await self._client._request(
                "GET",
                f"jobs/{self.id}",
                params={"wait": seconds},
                headers=headers,
                timeout=seconds + self._client.timeout,
                idempotent=True,
            )
            changed = self._update(response) and self.data != before
            if changed and on_change is not None:
                on_change(self)
            pause = _core.unheld_pause(response, changed, seconds, time.monotonic() - started, deadline)
            if pause:
                await self._client._sleep(pause)
        return self

    async def cancel(self) -> AsyncJob:
        self.data = (await self._client._request("POST", f"jobs/{self.id}/cancel")).json()
        return self

    async def retry(self) -> AsyncJob:
        self.data = (await self._client._request("POST", f"jobs/{self.id}/retry")).json()
        return self

    async def files(self) -> list[dict]:
        if "files" not in self.data:
            await self.refresh()
        return list(self.data.get("files") or [])

    async def download(self, name: str, dest: str | None = None) -> bytes | str:
        return await self._client.download(f"jobs/{self.id}/files/{name}", dest)

    def logs(self, attempt: int | None = None, page_size: int | None = None) -> AsyncIterator[dict]:
        """As `Job.logs`: `async for line in job.logs(): ...`."""
        params = _core.query({"attempt": attempt, "page_size": page_size})
        return self._client._pages(f"jobs/{self.id}/logs", params)


class AsyncClient:
    """The job platform's API over httpx.AsyncClient; see `Client` for retries and keys."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        max_retries: int = 3,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self._http = http or httpx.AsyncClient(**_core.http_options(self.url, token, timeout))
        self._sleep = asyncio.sleep

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        idempotent: bool = False,
    ) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = await self._http.request(
                    method,
                    path,
                    params=params,
                    json=json,
                    headers=headers,
                    timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
                )
            except httpx.TransportError as exc:
                if not idempotent or attempt >= self.max_retries:
                    raise ConnectionFailed(f"{method} {path}: {exc!r}") from exc
                await self._sleep(_core.retry_delay(None, attempt))
                attempt += 1
                continue
            if _core.should_retry(response, attempt, self.max_retries):
                delay = _core.retry_delay(_core.parse_retry_after(response.headers.get("Retry-After")), attempt)
                await self._sleep(delay)
                attempt += 1
                continue
            _core.raise_for(response)
            return response

    def _job(self, response: httpx.Response) -> AsyncJob:
        return AsyncJob(self, response.json(), response.headers.get("ETag"))

    async def submit(
        self,
        kind: str,
        payload: Any = None,
        *,
        priority: str | None = None,
        run_at: Any = None,
        max_attempts: int | None = None,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
    ) -> AsyncJob:
        body = _core.submission(
            kind, payload, priority=priority, run_at=run_at, max_attempts=max_attempts, callback_url=callback_url
        )
        key = idempotency_key or _core.new_idempotency_key()
        response = await self._request("POST", "jobs", json=body, headers={"Idempotency-Key": key}, idempotent=True)
        job = self._job(response)
        job.replayed = response.headers.get("Idempotent-Replayed") == "true"
        return job

    async def batch(self, jobs: Iterable[JobSpec]) -> list[AsyncJob]:
        items = [_core.submission(*item) if isinstance(item, tuple) else dict(item) for item in jobs]
        response = await self._request("POST", "jobs/batch", json={"jobs": items})
        return [AsyncJob(self, data) for data in response.json()["jobs"]]

    async def get(self, job_id: str) -> AsyncJob:
        return self._job(await self._request("GET", f"jobs/{job_id}", idempotent=True))

    async def cancel(self, job_id: str) -> AsyncJob:
        return self._job(await self._request("POST", f"jobs/{job_id}/cancel"))

    async def retry(self, job_id: str) -> AsyncJob:
        return self._job(await self._request("POST", f"jobs/{job_id}/retry"))

    async def wait(self, job_id: str, timeout: float | None = None) -> AsyncJob:
        return await (await self.get(job_id)).wait(timeout)

    async def jobs(
        self,
        *,
        status: str | Iterable[str] | None = None,
        kind: str | None = None,
        page_size: int | None = None,
        **filters: Any,
    ) -> AsyncIterator[AsyncJob]:
        params = _core.query({"status": status, "kind": kind, "page_size": page_size, **filters})
        async for row in self._pages("jobs", params):
            yield AsyncJob(self, row)

    async def _pages(self, path: str, params: dict | None = None) -> AsyncIterator[dict]:
        url: str | None = path
        while url:
            page = (await self._request("GET", url, params=params, idempotent=True)).json()
            for row in page["results"]:
                yield row
            url, params = page.get("next"), None

    async def watch(self, job_id: str, timeout: float | None = None) -> AsyncIterator[dict]:
        """As `Client.watch`: the job now and at each change until it has finished (SSE)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        parser = _core.SSEParser()
        while True:
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"job {job_id} has not finished after {timeout} s")
            seconds, started = _core.wait_seconds(deadline), time.monotonic()
            headers = {"Accept": "text/event-stream"}
            if parser.last_id:
                headers["Last-Event-ID"] = parser.last_id
            request = self._http.build_request(
                "GET", f"jobs/{job_id}/events", params={"wait": seconds}, headers=headers,
                timeout=seconds + self.timeout,
            )  # fmt: skip
            try:
                response = await self._http.send(request, stream=True)
            except httpx.TransportError as exc:
                raise ConnectionFailed(f"GET {request.url}: {exc!r}") from exc
            try:
                if response.status_code >= 400:
                    await response.aread()
                    _core.raise_for(response)
                async for line in response.aiter_lines():
                    for event, _id, data in parser.line(line):
                        if event == "end":
                            return
                        job = _core.event_job(data) if event == "job" else None
                        if job is not None:
                            yield job
            finally:
                await response.aclose()
            if time.monotonic() - started < 0.5:  # a stream the server could not hold: don't spin
                await self._sleep(
                    min(1.0, _core.MAX_WAIT if deadline is None else max(0.0, deadline - time.monotonic()))
                )

    async def files(self, job: AsyncJob | str) -> list[dict]:
        return await (job if isinstance(job, AsyncJob) else await self.get(job)).files()

    async def download(self, url: str, dest: str | None = None) -> bytes | str:
        if dest is None:
            return (await self._request("GET", url, idempotent=True)).content
        async with self._http.stream("GET", url) as response:
            if response.status_code >= 400:
                await response.aread()
                _core.raise_for(response)
            with open(dest, "wb") as out:
                async for chunk in response.aiter_bytes():
                    out.write(chunk)
        return dest

    async def create_workflow(
        self,
        jobs: Iterable[Mapping[str, Any]],
        *,
        name: str | None = None,
        on_failure: str | None = None,
        callback_url: str | None = None,
    ) -> dict:
        body = _core.query({"name": name, "on_failure": on_failure, "callback_url": callback_url})
        body["jobs"] = [dict(j) for j in jobs]
        return (await self._request("POST", "workflows", json=body)).json()

    async def get_workflow(self, workflow_id: str, *, wait: int | None = None) -> dict:
        params = {"wait": wait} if wait is not None else None
        t = None if wait is None else wait + self.timeout
        response = await self._request("GET", f"workflows/{workflow_id}", params=params, timeout=t, idempotent=True)
        return response.json()

    def workflows(self, *, page_size: int | None = None) -> AsyncIterator[dict]:
        return self._pages("workflows", _core.query({"page_size": page_size}))

    async def cancel_workflow(self, workflow_id: str) -> dict:
        return (await self._request("POST", f"workflows/{workflow_id}/cancel")).json()

    async def create_schedule(self, kind: str, payload: Any = None, **fields: Any) -> dict:
        body = {"kind": kind, "payload": {} if payload is None else payload, **_core.query(fields)}
        return (await self._request("POST", "schedules", json=body)).json()

    async def get_schedule(self, schedule_id: str) -> dict:
        return (await self._request("GET", f"schedules/{schedule_id}", idempotent=True)).json()

    def schedules(self, *, page_size: int | None = None) -> AsyncIterator[dict]:
        return self._pages("schedules", _core.query({"page_size": page_size}))

    async def update_schedule(self, schedule_id: str, **fields: Any) -> dict:
        return (await self._request("PATCH", f"schedules/{schedule_id}", json=fields)).json()

    async def delete_schedule(self, schedule_id: str) -> None:
        await self._request("DELETE", f"schedules/{schedule_id}")
