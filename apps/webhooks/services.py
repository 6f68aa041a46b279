"""Webhooks: the client's signing secret, creating a delivery when a job ends, and the
delivery itself (run by the `webhooks.deliver` kind, workers/kinds/webhooks.py).

A delivery is a job of its own, so its retries (exponential backoff with jitter), its
attempt history and its dead letter when every attempt failed come from the platform.
"""

from __future__ import annotations

import http.client
import json
import logging
import secrets
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from apps.core.errors import TooManyRequests, Unavailable
from apps.core.urlsafety import UnsafeURL, check_outbound_url
from apps.jobs import lifecycle
from apps.jobs.models import Job
from apps.jobs.registry import PermanentError, RetryableError
from apps.webhooks import outbound, selectors, signing
from apps.webhooks.models import WebhookSecret

logger = logging.getLogger(__name__)

DELIVER_KIND = "webhooks.deliver"
EVENT_JOB_FINISHED = "job.finished"
# Events about something other than a job (a workflow's end), each with the document its
# body carries, registered by the layer that sends it (webhook_event_register).
EVENT_WORKFLOW_FINISHED = "workflow.finished"
EVENTS = (EVENT_JOB_FINISHED, EVENT_WORKFLOW_FINISHED)
# event -> (owner id, subject id) -> the body's document, or None when the subject is gone.
_documents: dict[str, Callable[[int, str], dict[str, Any] | None]] = {}


def webhook_event_register(event: str, document: Callable[[int, str], dict[str, Any] | None]) -> None:
    """Say what the body of `event` carries: a layer above jobs (apps.workflows) sends its
    own events through the same signed, retried delivery without webhooks knowing it."""
    _documents[event] = document


USER_AGENT = "jobplatform-webhooks/1"
DEFAULT_TIMEOUT_SECONDS = 10.0


# --- the secret ---------------------------------------------------------------------------


def _new_secret() -> str:
    return secrets.token_urlsafe(32)


def webhook_secret_get_or_create(*, owner_id: int) -> WebhookSecret:
    """The client's secret, made on first need. Two processes racing to make it end with one
    (the one-to-one constraint; get_or_create reads the winner's row)."""
    record, _ = WebhookSecret.objects.get_or_create(owner_id=owner_id, defaults={"secret": _new_secret()})
    return record


def webhook_secret_rotate(*, owner_id: int) -> WebhookSecret:
    """Replace the client's secret. Deliveries signed from now on (retries included) use the
    new one; there is no overlap, so a receiver should switch as soon as it rotates."""
    with transaction.atomic():
        record, created = WebhookSecret.objects.select_for_update().get_or_create(
            owner_id=owner_id, defaults={"secret": _new_secret()}
        )
        if not created:
            record.secret = _new_secret()
            record.rotated_at = timezone.now()
            record.save(update_fields=["secret", "rotated_at"])
    logger.info("webhook secret of user %s rotated", owner_id)
    return record


# --- creating a delivery ------------------------------------------------------------------


def webhook_delivery_submit(*, job_id: str, url: str, event: str = EVENT_JOB_FINISHED) -> Job:
    """Create the delivery job that POSTs `event` about `job_id` to `url`, for the job's owner.

    A full queue or a client at its in-flight quota must not lose a webhook: the job it is
    about was admitted already, and its delivery is a bounded consequence of that (one per
    finish), so when admission refuses it the delivery is created anyway, past the check.
    """
    job = Job.objects.select_related("owner").get(id=job_id)
    payload = {"job_id": str(job.id), "url": url, "event": event}
    try:
        return lifecycle.job_submit(owner=job.owner, kind=DELIVER_KIND, payload=payload, request_id=job.request_id)
    except (TooManyRequests, Unavailable) as refused:
        logger.warning(
            "job %s: admission refused its webhook delivery (%s); creating it past the check", job.id, refused.code
        )
        return _delivery_create_past_admission(owner=job.owner, payload=payload, request_id=job.request_id)


def webhook_event_submit(*, owner_id: int, event: str, subject_id: str, url: str, request_id: str = "") -> Job:
    """Create the delivery job that POSTs `event` about `subject_id` (a registered event's
    subject, such as a workflow) to `url`, for its owner; past admission as a job's is."""
    owner = get_user_model().objects.get(pk=owner_id)
    payload = {"subject_id": subject_id, "url": url, "event": event}
    try:
        return lifecycle.job_submit(owner=owner, kind=DELIVER_KIND, payload=payload, request_id=request_id)
    except (TooManyRequests, Unavailable) as refused:
        logger.warning(
            "%s %s: admission refused its webhook (%s); creating it past the check", event, subject_id, refused.code
        )
        return _delivery_create_past_admission(owner=owner, payload=payload, request_id=request_id)


def _delivery_create_past_admission(*, owner: AbstractBaseUser, payload: dict[str, Any], request_id: str) -> Job:
    """job_submit without the admission check: the jobs app's one creation path (same row,
    same publish after commit, same relay if Redis is away)."""
    checked = lifecycle.job_check(owner=None, kind=DELIVER_KIND, payload=payload)
    with transaction.atomic():
        [job] = lifecycle.jobs_create(owner=owner, checked=[checked], request_id=request_id)
        return job


# --- the delivery ---------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def webhook_body(*, job: Job | dict[str, Any], event: str) -> bytes:
    """The webhook's JSON body about `job` (a Job, or its selectors.JOB_FIELDS as a dict):
    compact, keys sorted, so its bytes are what was signed."""
    facts = job if isinstance(job, dict) else {name: getattr(job, name) for name in selectors.JOB_FIELDS}
    error = {"type": facts["error_type"], "message": facts["error_message"]} if facts["error_type"] else None
    document = {
        "event": event,
        "job": {
            "id": str(facts["id"]),
            "kind": facts["kind"],
            "status": facts["status"],
            "attempts": facts["attempts"],
            "result": facts["result"],
            "error": error,
            "created_at": _iso(facts["created_at"]),
            "started_at": _iso(facts["started_at"]),
            "finished_at": _iso(facts["finished_at"]),
        },
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode("utf-8")


def _timeout() -> float:
    return float(getattr(settings, "WEBHOOK_TIMEOUT_SECONDS", DEFAULT_TIMEOUT_SECONDS))


def _checked_addresses(url: str) -> list[str]:
    """Check the URL again now (its DNS may have changed since submit) and return the
    addresses the request may connect to."""
    try:
        return check_outbound_url(url)
    except UnsafeURL as exc:
        # urlsafety raises UnsafeURL "from None" for a name that does not resolve, which
        # keeps the resolver's error as __context__: DNS may come back, so that one retries.
        if isinstance(exc.__context__, socket.gaierror):
            raise RetryableError(f"{outbound.safe_url(url)}: {exc}") from None
        raise PermanentError(f"the callback URL is refused: {exc}") from None


def _event_body(*, owner_id: int, event: str, subject_id: str) -> bytes:
    """The body of a registered event about `subject_id` (webhook_event_register)."""
    document = _documents[event](owner_id, subject_id) if event in _documents else None
    if document is None:
        raise PermanentError(f"{event}: {subject_id} does not exist (or belongs to another client)")
    return json.dumps({"event": event, **document}, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def webhook_deliver(
    *, delivery_id: str, job_id: str | None, url: str, event: str, subject_id: str | None = None
) -> dict[str, Any]:
    """POST one signed webhook about `job_id` (or a registered event's `subject_id`) to
    `url`. Returns what the receiver answered (2xx); raises PermanentError when retrying
    cannot help (the URL is refused, the job is gone, the receiver answered 4xx other than
    408 and 429), RetryableError otherwise."""
    # The client, its secret and the job in one read (see apps.webhooks.selectors).
    facts = selectors.delivery_facts(delivery_id=delivery_id, job_id=None if subject_id is not None else job_id)
    if facts is None:
        raise PermanentError(f"the delivery job {delivery_id} does not exist")
    owner_id = facts.owner_id
    if subject_id is not None:
        body = _event_body(owner_id=owner_id, event=event, subject_id=subject_id)
    else:
        # A delivery speaks only of its own client's jobs, whoever created it.
        if facts.job is None:
            raise PermanentError(f"job {job_id} does not exist (or belongs to another client)")
        body = webhook_body(job=facts.job, event=event)
    about = job_id or subject_id
    target = outbound.safe_url(url)
    addresses = _checked_addresses(url)

    secret = facts.secret or webhook_secret_get_or_create(owner_id=owner_id).secret
    timestamp = int(time.time())  # per attempt: a retry hours later is still inside the tolerance
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Webhook-Id": delivery_id,
        "Webhook-Timestamp": str(timestamp),
        "Webhook-Signature": signing.signature_header(secret, timestamp, body),
    }
    started = time.monotonic()
    try:
        answer = outbound.post_pinned(url, addresses=addresses, body=body, headers=headers, timeout=_timeout())
    except TimeoutError:
        raise RetryableError(f"POST {target}: no answer within {_timeout():g} s") from None
    except (OSError, http.client.HTTPException) as exc:
        raise RetryableError(f"POST {target}: {type(exc).__name__}: {exc}") from None
    duration_ms = int((time.monotonic() - started) * 1000)
    status = answer.status
    logger.info("webhook %s (%s %s): %s answered %s in %d ms", delivery_id, event, about, target, status, duration_ms)

    if 200 <= status < 300:
        return {"status_code": status, "duration_ms": duration_ms}
    said = f"POST {target} answered {status} {answer.reason}".rstrip()
    if answer.excerpt.strip():
        said += f": {answer.excerpt.strip()[:200]}"
    if 300 <= status < 400:
        # Redirects are never followed (the new address was not checked); the receiver's
        # configuration may be fixed, so the attempts go on.
        raise RetryableError(f"{said} (redirects are not followed; use the final URL as callback_url)")
    if 400 <= status < 500 and status not in (408, 429):
        # 410 Gone and every other client error: the same request will be refused again.
        raise PermanentError(said)
    raise RetryableError(said)  # 5xx, 408, 429, and anything else unexpected
