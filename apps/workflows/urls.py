from django.urls import path

from apps.workflows import apis

urlpatterns = [
    path("workflows", apis.WorkflowListCreateApi.as_view(), name="workflow-list"),
    path("workflows/<uuid:workflow_id>", apis.WorkflowDetailApi.as_view(), name="workflow-detail"),
    path("workflows/<uuid:workflow_id>/cancel", apis.WorkflowCancelApi.as_view(), name="workflow-cancel"),
]
