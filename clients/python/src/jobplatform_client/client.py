"""The synchronous client: `Client(url, token=...)` and its `Job` handle."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Callable, Union

import httpx

from . import _core
from .errors import ConnectionFailed, WaitTimeout

JobSpec = Union[Mapping[str, Any], tuple]


class Job(_core.JobData):
    """A handle on one job: its JSON's fields as attributes, plus the calls that act on it."""

    def __init__(self, client: Client, data: dict, etag: str | None = None) -> None:
        super().__init__(data, etag)
        self._client = client

    def refresh(self) -> Job:
        """Fetch the job again (a conditional GET: unchanged costs the server almost nothing)."""
        headers = {"If-None-Match": self.etag} if self.etag else None
        self._update(self._client._request("GET", f"jobs/{self.id}", headers=headers, idempotent=True))
        return self

    def wait(self, timeout: float | None = None, on_change: Callable[[Job], Any] | None = None) -> Job:
        """Block until the job has finished (succeeded, failed or cancelled) and return it.

        Long-polls `?wait=N` with the job's ETag, so each request is held by the server until
        the job changes; no sleeping in between. `on_change(job)` is called after each change.
        Raises WaitTimeout (with `.job`) when `timeout` seconds pass first; None waits for ever."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done:
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"job {self.id} is still {self.status} after {timeout} s", self)
            seconds = _core.wait_seconds(deadline)
            headers = {"If-None-Match": self.etag} if self.etag else None
            before, started = self.data, time.monotonic()
            response = self._client._request(
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
                self._client._sleep(pause)
        return self

    def cancel(self) -> Job:
        """Ask the job to stop (a queued job is cancelled at once; a running one when it checks)."""
        self.data = self._client._request("POST", f"jobs/{self.id}/cancel").json()
        return self

    def retry(self) -> Job:
        """Run the failed job again with a fresh allowance of attempts; `wait()` then follows
        it. A job that is not failed raises Conflict (`job_not_failed`)."""
        self.data = self._client._request("POST", f"jobs/{self.id}/retry").json()
        return self

    def files(self) -> list[dict]:
        """The files the job's result offers, each `{"name", "url"}`."""
        if "files" not in self.data:
            self.refresh()
        return list(self.data.get("files") or [])

    def download(self, name: str, dest: str | None = None) -> bytes | str:
        """One of the job's files by name: its bytes, or written to `dest` (returned)."""
        return self._client.download(f"jobs/{self.id}/files/{name}", dest)

    def logs(self, attempt: int | None = None, page_size: int | None = None) -> Iterator[dict]:
        """What the job's handler logged, oldest first, every page: each line a dict with
        `attempt`, `seq`, `at`, `level`, `logger` and `message`; `attempt` keeps one attempt's."""
        params = _core.query({"attempt": attempt, "page_size": page_size})
        return self._client._pages(f"jobs/{self.id}/logs", params)

    def watch(self, timeout: float | None = None) -> Iterator[Job]:
        """Yield the job at each change until it finishes (server-sent events)."""
        for data in self._client.watch(self.id, timeout=timeout):
            self.data = data
            yield self


class Client:
    """The job platform's API. `url` is the site's root (e.g. http://127.0.0.1:8000).

    429 and 503 answers are retried up to `max_retries` times, sleeping what `Retry-After`
    says (at most 30 s each); a submission carries an Idempotency-Key (made for it unless
    given) that stays the same across those retries, so a retry never makes a second job."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        max_retries: int = 3,
        http: httpx.Client | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self._http = http or httpx.Client(**_core.http_options(self.url, token, timeout))
        self._sleep = time.sleep

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _request(
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
        """One API call with its retries. `idempotent` also retries a connection failure
        (safe for reads and for a submission with its Idempotency-Key)."""
        attempt = 0
        while True:
            try:
                response = self._http.request(
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
                self._sleep(_core.retry_delay(None, attempt))
                attempt += 1
                continue
            if _core.should_retry(response, attempt, self.max_retries):
                self._sleep(_core.retry_delay(_core.parse_retry_after(response.headers.get("Retry-After")), attempt))
                attempt += 1
                continue
            _core.raise_for(response)
            return response

    def _job(self, response: httpx.Response) -> Job:
        return Job(self, response.json(), response.headers.get("ETag"))

    # Jobs

    def submit(
        self,
        kind: str,
        payload: Any = None,
        *,
        priority: str | None = None,
        run_at: Any = None,
        max_attempts: int | None = None,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """Submit a job (`POST /api/v1/jobs`). `run_at` is a datetime or an ISO 8601 string."""
        body = _core.submission(
            kind, payload, priority=priority, run_at=run_at, max_attempts=max_attempts, callback_url=callback_url
        )
        key = idempotency_key or _core.new_idempotency_key()
        response = self._request("POST", "jobs", json=body, headers={"Idempotency-Key": key}, idempotent=True)
        job = self._job(response)
        job.replayed = response.headers.get("Idempotent-Replayed") == "true"
        return job

    def batch(self, jobs: Iterable[JobSpec]) -> list[Job]:
        """Submit up to 1,000 jobs at once, all or nothing. Each item is a dict shaped like a
        submission (`{"kind", "payload", "priority"?, ...}`) or a `(kind, payload)` tuple.
        (The API takes no Idempotency-Key on batches, so a batch is never retried after a
        connection failure.)"""
        items = [_core.submission(*item) if isinstance(item, tuple) else dict(item) for item in jobs]
        response = self._request("POST", "jobs/batch", json={"jobs": items})
        return [Job(self, data) for data in response.json()["jobs"]]

    def get(self, job_id: str) -> Job:
        return self._job(self._request("GET", f"jobs/{job_id}", idempotent=True))

    def cancel(self, job_id: str) -> Job:
        return self._job(self._request("POST", f"jobs/{job_id}/cancel"))

    def retry(self, job_id: str) -> Job:
        return self._job(self._request("POST", f"jobs/{job_id}/retry"))

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        return self.get(job_id).wait(timeout)

    def jobs(
        self,
        *,
        status: str | Iterable[str] | None = None,
        kind: str | None = None,
        page_size: int | None = None,
        **filters: Any,
    ) -> Iterator[Job]:
        """Every job of this client, newest first, following the `next` cursor page by page.
        Other filters (created_after, created_before, workflow, schedule, include) pass through."""
        params = _core.query({"status": status, "kind": kind, "page_size": page_size, **filters})
        for row in self._pages("jobs", params):
            yield Job(self, row)

    def _pages(self, path: str, params: dict | None = None) -> Iterator[dict]:
        url: str | None = path
        while url:
            page = self._request("GET", url, params=params, idempotent=True).json()
            yield from page["results"]
            url, params = page.get("next"), None  # the next URL carries the filters and the cursor

    def watch(self, job_id: str, timeout: float | None = None) -> Iterator[dict]:
        """Yield the job (as a dict) now and at each change until it has finished, from the
        server-sent events endpoint; each stream lasts at most 30 s, then it reconnects with
        Last-Event-ID so only newer states come."""
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
                response = self._http.send(request, stream=True)
            except httpx.TransportError as exc:
                raise ConnectionFailed(f"GET {request.url}: {exc!r}") from exc
            try:
                if response.status_code >= 400:
                    response.read()
                    _core.raise_for(response)
                for event, _id, data in parser.feed(response.iter_lines()):
                    if event == "end":
                        return
                    job = _core.event_job(data) if event == "job" else None
                    if job is not None:
                        yield job
            finally:
                response.close()
            if time.monotonic() - started < 0.5:  # a stream the server could not hold: don't spin
                self._sleep(min(1.0, _core.MAX_WAIT if deadline is None else max(0.0, deadline - time.monotonic())))

    # Files

    def files(self, job: Job | str) -> list[dict]:
        """The files a job's result offers, each `{"name", "url"}`."""
        return (job if isinstance(job, Job) else self.get(job)).files()

    def download(self, url: str, dest: str | None = None) -> bytes | str:
        """GET a file (a `files` entry's `url`, or a path under /api/v1/) with this client's
        token: its bytes, or streamed into the file `dest`, which is returned."""
        if dest is None:
            return self._request("GET", url, idempotent=True).content
        with self._http.stream("GET", url) as response:
            if response.status_code >= 400:
                response.read()
                _core.raise_for(response)
            with open(dest, "wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
        return dest

    # Workflows

    def create_workflow(
        self,
        jobs: Iterable[Mapping[str, Any]],
        *,
        name: str | None = None,
        on_failure: str | None = None,
        callback_url: str | None = None,
    ) -> dict:
        """`jobs` are `{"ref", "kind", "payload", "depends_on"?, "priority"?, "max_attempts"?}`."""
        body = _core.query({"name": name, "on_failure": on_failure, "callback_url": callback_url})
        body["jobs"] = [dict(j) for j in jobs]
        return self._request("POST", "workflows", json=body).json()

    def get_workflow(self, workflow_id: str, *, wait: int | None = None) -> dict:
        params = {"wait": wait} if wait is not None else None
        t = None if wait is None else wait + self.timeout
        return self._request("GET", f"workflows/{workflow_id}", params=params, timeout=t, idempotent=True).json()

    def workflows(self, *, page_size: int | None = None) -> Iterator[dict]:
        return self._pages("workflows", _core.query({"page_size": page_size}))

    def cancel_workflow(self, workflow_id: str) -> dict:
        return self._request("POST", f"workflows/{workflow_id}/cancel").json()

    # Schedules

    def create_schedule(self, kind: str, payload: Any = None, **fields: Any) -> dict:
        """`fields`: `cron` or `every_seconds`, and optionally `timezone`, `enabled`, `priority`."""
        body = {"kind": kind, "payload": {} if payload is None else payload, **_core.query(fields)}
        return self._request("POST", "schedules", json=body).json()

    def get_schedule(self, schedule_id: str) -> dict:
        return self._request("GET", f"schedules/{schedule_id}", idempotent=True).json()

    def schedules(self, *, page_size: int | None = None) -> Iterator[dict]:
        return self._pages("schedules", _core.query({"page_size": page_size}))

    def update_schedule(self, schedule_id: str, **fields: Any) -> dict:
        return self._request("PATCH", f"schedules/{schedule_id}", json=fields).json()

    def delete_schedule(self, schedule_id: str) -> None:
        self._request("DELETE", f"schedules/{schedule_id}")
