from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.webhooks import services
from apps.webhooks.models import WebhookSecret


@admin.register(WebhookSecret)
class WebhookSecretAdmin(admin.ModelAdmin):
    """Secrets are shown masked (the last four characters); the client reads its own over
    the API. Rotating here is how an admin revokes a leaked one."""

    list_display = ["owner", "masked_secret", "created_at", "rotated_at"]
    list_select_related = ["owner"]
    search_fields = ["owner__username"]
    ordering = ["-created_at"]
    fields = ["owner", "masked_secret", "created_at", "rotated_at"]
    readonly_fields = fields
    actions = ["rotate"]

    @admin.display(description="secret")
    def masked_secret(self, record: WebhookSecret) -> str:
        return record.masked

    @admin.action(description="Rotate: replace the selected secrets (receivers need the new one)")
    def rotate(self, request: HttpRequest, queryset: QuerySet[WebhookSecret]) -> None:
        owners = list(queryset.values_list("owner_id", flat=True))
        for owner_id in owners:
            services.webhook_secret_rotate(owner_id=owner_id)
        self.message_user(request, f"{len(owners)} secret(s) rotated.", messages.SUCCESS)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # made on first need, for the client that needs it
