"""Followers of the jobs app's signals (connected in WebhooksConfig.ready)."""

from __future__ import annotations

import logging
from typing import Any

from apps.webhooks import services
from apps.webhooks.outbound import safe_url

logger = logging.getLogger(__name__)


def job_finished_deliver_webhook(
    sender: Any, *, job_id: str, kind: str, status: str, callback_url: str = "", **kwargs: Any
) -> None:
    """A job with a callback_url ended: create its delivery job. Runs after the finish
    commits, in whichever process finished the job (worker, beat's reconciler, web)."""
    if not callback_url or kind == services.DELIVER_KIND:
        return  # a delivery never announces itself, or one failure would feed the next
    try:
        delivery = services.webhook_delivery_submit(job_id=job_id, url=callback_url)
    except Exception:
        # Raising here would abort the rest of the finishing transaction's on-commit work
        # (and fail the worker's task after the job is already recorded); say so loudly.
        logger.exception(
            "job %s (%s): could not create its webhook delivery to %s", job_id, kind, safe_url(callback_url)
        )
        return
    logger.info("job %s (%s) is %s: webhook delivery %s queued", job_id, kind, status, delivery.id)
