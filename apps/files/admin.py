from django.contrib import admin

from apps.files.models import Upload


@admin.register(Upload)
class UploadAdmin(admin.ModelAdmin):
    list_display = ["id", "owner", "size", "content_type", "created_at"]
    list_filter = ["content_type"]
    search_fields = ["id", "sha256", "owner__username"]
    readonly_fields = ["id", "owner", "file", "size", "sha256", "content_type", "created_at"]
    date_hierarchy = "created_at"
