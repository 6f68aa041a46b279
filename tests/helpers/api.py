"""The API as a client sees it: a client holding a user's token, the fields of a job's answer,
and the job ids waiting on a queue of the (private) Redis broker."""

from __future__ import annotations

import base64
import json
from typing import Any

import redis
from django.conf import settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient


def client_for(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


JOB_FIELDS = {
    "id",
    "kind",
    "status",
    "priority",
    "attempts",
    "max_attempts",
    "progress",
    "result",
    "error",
    "created_at",
    "started_at",
    "finished_at",
    "links",
}


def queued_job_ids(queue: str) -> list[str]:
    """The job ids waiting on a queue of the (private) Redis broker, read as a worker would."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        ids = []
        for raw in client.lrange(queue, 0, -1):
            args, _kwargs, _embed = json.loads(base64.b64decode(json.loads(raw)["body"]))
            ids.extend(args)
        return ids
    finally:
        client.close()
