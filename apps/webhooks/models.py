from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class WebhookSecret(models.Model):
    """The key a client's webhooks are signed with (HMAC-SHA256; see apps.webhooks.signing).
    Kept in clear because signing needs it; created on first need, replaced on rotation."""

    owner = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_secret")
    secret = models.CharField(max_length=128)
    created_at = models.DateTimeField(default=timezone.now)
    rotated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "webhook secret"

    def __str__(self) -> str:
        # Never the secret itself: this string ends up in the admin and in log lines.
        return f"webhook secret of user {self.owner_id}"

    @property
    def masked(self) -> str:
        return f"{'•' * 8}{self.secret[-4:]}" if self.secret else "-"
