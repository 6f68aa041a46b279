"""A client's webhook secret: read it, rotate it. Only ever its own."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.webhooks import services
from apps.webhooks.serializers import WebhookSecretOutput

# A secret must not sit in a browser's or a proxy's cache.
_NO_STORE = {"Cache-Control": "no-store"}


class WebhookSecretApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses=WebhookSecretOutput, operation_id="webhook_secret_retrieve")
    def get(self, request: Request) -> Response:
        record = services.webhook_secret_get_or_create(owner_id=request.user.pk)
        return Response(WebhookSecretOutput(record).data, headers=_NO_STORE)


class WebhookSecretRotateApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(request=None, responses=WebhookSecretOutput, operation_id="webhook_secret_rotate")
    def post(self, request: Request) -> Response:
        record = services.webhook_secret_rotate(owner_id=request.user.pk)
        return Response(WebhookSecretOutput(record).data, headers=_NO_STORE)
