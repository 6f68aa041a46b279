"""Followers of the jobs app's signals (connected in WebhooksConfig.ready)."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from apps.webhooks import services
from apps.webhooks.outbound import safe_url

logger = logging.getLogger(__name__)


def job_finishing_deliver_webhook(
    sender: Any, *, job_id: str, kind: str, status: str, callback_url: str = "", **kwargs: Any
) -> None:
    """A job with a callback_url is ending: create its delivery job inside the transaction
    that finishes it, in whichever process finishes the job (worker, beat's reconciler, web),
    so no process dying between that commit and a follow-up can lose the webhook."""
    if not callback_url or kind == services.DELIVER_KIND:
        return  # a delivery never announces itself, or one failure would feed the next
    try:
        # A savepoint: a delivery that cannot be made rolls back alone, not the finish.
        with transaction.atomic():
            delivery = services.webhook_delivery_submit(job_id=job_id, url=callback_url)
    except Exception:
        # Raising here would roll back the finish itself (and fail the worker's task); a job
        # must end whatever becomes of its webhook, so say so loudly instead.
        logger.exception(
            "job %s (%s): could not create its webhook delivery to %s", job_id, kind, safe_url(callback_url)
        )
        return
    logger.info("job %s (%s) is %s: webhook delivery %s queued", job_id, kind, status, delivery.id)
