"""The operations API under /api/v1/ (apps.ops.apis): queues, and pausing queues and kinds."""

from django.urls import path

from apps.ops import apis

urlpatterns = [
    path("queues", apis.QueueListApi.as_view(), name="queue-list"),
    path("queues/<str:name>/pause", apis.QueuePauseApi.as_view(), name="queue-pause"),
    path("queues/<str:name>/resume", apis.QueueResumeApi.as_view(), name="queue-resume"),
    path("kinds/<str:name>/pause", apis.KindPauseApi.as_view(), name="kind-pause"),
    path("kinds/<str:name>/resume", apis.KindResumeApi.as_view(), name="kind-resume"),
]
