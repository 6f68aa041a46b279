"""What the sync and async clients share: retry timing, error decoding, the job handle's
data, and the server-sent events parser. Nothing here does I/O."""

from __future__ import annotations

import email.utils
import json
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import httpx

from .errors import ApiError, error_for

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
RETRY_STATUSES = frozenset({429, 503})
MAX_RETRY_AFTER = 30.0  # never sleep longer than this on one Retry-After, whatever the server says
MAX_WAIT = 30  # the API's bound on ?wait=N
USER_AGENT = "jobplatform-client-python/0.1.0"


def http_options(url: str, token: str | None, timeout: float) -> dict[str, Any]:
    """The httpx client's options, the same for the sync and the async client."""
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Token {token}"
    return {"base_url": url + "/api/v1/", "headers": headers, "timeout": timeout}


def new_idempotency_key() -> str:
    return str(uuid.uuid4())


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (a number of seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def retry_delay(retry_after: float | None, attempt: int) -> float:
    """How long to sleep before retry number `attempt` (0-based): the server's Retry-After when
    it gave one, else exponential backoff; bounded either way."""
    if retry_after is None:
        retry_after = 0.5 * (2**attempt)
    return min(retry_after, MAX_RETRY_AFTER)


def decode(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return response.text


def raise_for(response: httpx.Response) -> None:
    """Raise the typed error for an error answer; do nothing for 2xx and 304."""
    if response.status_code < 400:
        return
    raise error_for(response.status_code, decode(response), parse_retry_after(response.headers.get("Retry-After")))


def should_retry(response: httpx.Response, attempt: int, max_retries: int) -> bool:
    return response.status_code in RETRY_STATUSES and attempt < max_retries


def submission(kind: str, payload: Any, **optional: Any) -> dict:
    """A job's JSON for submit and batch: only the fields given (the API refuses unknown ones)."""
    body: dict = {"kind": kind, "payload": {} if payload is None else payload}
    for name, value in optional.items():
        if value is not None:
            body[name] = value.isoformat() if hasattr(value, "isoformat") else value
    return body


def query(params: Mapping[str, Any]) -> dict:
    """Query parameters without the Nones; lists become the API's comma-separated form."""
    out = {}
    for name, value in params.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple, set, frozenset)):
            value = ",".join(str(v) for v in value)
        out[name] = value
    return out


def wait_seconds(deadline: float | None) -> int:
    """The ?wait=N for the next long poll: the API's most, or what is left before the deadline."""
    if deadline is None:
        return MAX_WAIT
    return max(0, min(MAX_WAIT, int(deadline - time.monotonic() + 0.999)))


def unheld_pause(response: httpx.Response, changed: bool, asked: int, took: float, deadline: float | None) -> float:
    """How long to pause before the next long poll. Nothing normally: the server held the
    request until the job changed. But a web process answers at once when all its waiting
    slots are taken or Redis is down; polling again at once would then spin, so wait what
    its Retry-After says (1 s while the job is queued or running) before asking again."""
    if changed or asked == 0 or took >= min(asked, 1.0) / 2:
        return 0.0
    pause = parse_retry_after(response.headers.get("Retry-After"))
    pause = min(1.0 if pause is None else pause, MAX_WAIT)
    if deadline is not None:
        pause = min(pause, max(0.0, deadline - time.monotonic()))
    return pause


class JobData:
    """A job as the API last showed it. Its JSON's fields are attributes (`id`, `status`,
    `result`, `error`, `progress`, `files`, ...); `.data` is the whole dict."""

    def __init__(self, data: dict, etag: str | None = None) -> None:
        self.data = data
        self.etag = etag
        self.replayed = False  # set by submit: the API answered with an earlier job for the same key

    def __getattr__(self, name: str) -> Any:
        data = self.__dict__.get("data") or {}
        if name in data:
            return data[name]
        raise AttributeError(name)

    def __getitem__(self, name: str) -> Any:
        return self.data[name]

    @property
    def id(self) -> str:
        return self.data["id"]

    @property
    def status(self) -> str:
        return self.data.get("status", "")

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    def _update(self, response: httpx.Response) -> bool:
        """Take a poll's answer; whether the job changed (a 304 did not)."""
        if response.status_code == 304:
            return False
        self.data = response.json()
        self.etag = response.headers.get("ETag") or self.etag
        return True

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.data.get('id')} {self.status}>"


class SSEParser:
    """Server-sent events from lines: yields (event, id, data) for each complete event."""

    def __init__(self) -> None:
        self.event, self.id, self.data = "", None, []
        self.last_id: str | None = None

    def feed(self, lines: Iterable[str]) -> Iterator[tuple[str, str | None, str]]:
        for line in lines:
            yield from self.line(line)

    def line(self, line: str) -> Iterator[tuple[str, str | None, str]]:
        line = line.rstrip("\r\n")
        if not line:
            if self.data or self.event:
                event = (self.event or "message", self.id, "\n".join(self.data))
                if self.id is not None:
                    self.last_id = self.id
                self.event, self.id, self.data = "", None, []
                yield event
            return
        if line.startswith(":"):
            return
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self.event = value
        elif name == "data":
            self.data.append(value)
        elif name == "id":
            self.id = value


def event_job(data: str) -> dict | None:
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


__all__ = ["TERMINAL_STATUSES", "ApiError", "JobData"]
