from django.urls import path

from apps.webhooks import apis

urlpatterns = [
    path("webhook-secret", apis.WebhookSecretApi.as_view(), name="webhook-secret"),
    path("webhook-secret/rotate", apis.WebhookSecretRotateApi.as_view(), name="webhook-secret-rotate"),
]
