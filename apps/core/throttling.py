from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from django.conf import settings
from rest_framework.throttling import UserRateThrottle

if TYPE_CHECKING:  # rest_framework.views imports the throttle classes at import time
    from rest_framework.request import Request
    from rest_framework.views import APIView

logger = logging.getLogger(__name__)


class ClientRateThrottle(UserRateThrottle):
    """Requests per client (per user, or per address when anonymous), counted in the shared
    Redis cache. If Redis is unreachable the throttle lets the request through: admission
    control and the broker's own answer decide then, and a throttle must never cause a 500."""

    scope = "client"

    def get_rate(self) -> str | None:
        # Read at request time (DRF's class attribute is frozen at import).
        return settings.API_THROTTLE_RATE or None

    def allow_request(self, request: Request, view: APIView) -> bool:
        try:
            return super().allow_request(request, view)
        except Exception as exc:
            logger.warning("request throttle unavailable, letting the request through: %s", exc)
            return True
