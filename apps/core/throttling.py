from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING

from django.conf import settings
from rest_framework.throttling import UserRateThrottle

from apps.core.redis import key, redis_client

if TYPE_CHECKING:  # rest_framework.views imports the throttle classes at import time
    from rest_framework.request import Request
    from rest_framework.views import APIView

logger = logging.getLogger(__name__)

KEY_PREFIX = key("throttle:")


class ClientRateThrottle(UserRateThrottle):
    """Requests per client (per user, or per address when anonymous), counted in Redis. If
    Redis is unreachable the throttle lets the request through: admission control and the
    broker's own answer decide then, and a throttle must never cause a 500.

    A sliding window approximated from two fixed ones (this window's count plus the last
    one's, weighted by how much of it still overlaps), as Redis rate limiters commonly do:
    one round trip of three small commands. DRF's own throttle keeps every request's
    timestamp in one cached list, read and written whole on each request: at 6,000/min a
    busy client's list was 6,000 floats, pickled twice per request."""

    scope = "client"

    def get_rate(self) -> str | None:
        # Read at request time (DRF's class attribute is frozen at import).
        return settings.API_THROTTLE_RATE or None

    def allow_request(self, request: Request, view: APIView) -> bool:
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        try:
            return self._allow(self.key, time.time())
        except Exception as exc:
            logger.warning("request throttle unavailable, letting the request through: %s", exc)
            return True

    def _allow(self, key: str, now: float) -> bool:
        limit, window = self.num_requests, float(self.duration)
        number = int(now // window)
        elapsed = now - number * window
        current_key = f"{KEY_PREFIX}{key}:{number}"
        pipe = redis_client().pipeline(transaction=False)
        pipe.incr(current_key)
        pipe.expire(current_key, int(window * 2) + 1)
        pipe.get(f"{KEY_PREFIX}{key}:{number - 1}")
        current, _, previous_raw = pipe.execute()
        previous = int(previous_raw or 0)
        if previous * (1 - elapsed / window) + current <= limit:
            return True
        # When does the next request fit? Within this window if the last one's fading share
        # is what is over; else after this window ends and its own share fades in turn.
        if current < limit and previous:
            seconds = window * (1 - (limit - current - 1) / previous) - elapsed
        else:
            seconds = (window - elapsed) + window * (1 - (limit - 1) / current)
        self._wait = max(1, math.ceil(seconds))
        return False

    def wait(self) -> float:
        return self._wait
