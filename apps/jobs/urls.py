from django.urls import path

from apps.jobs import apis

urlpatterns = [
    path("jobs", apis.JobListCreateApi.as_view(), name="job-list"),
    path("jobs/batch", apis.JobBatchSubmitApi.as_view(), name="job-batch"),
    path("jobs/<uuid:job_id>", apis.JobDetailApi.as_view(), name="job-detail"),
    path("jobs/<uuid:job_id>/events", apis.JobEventsApi.as_view(), name="job-events"),
    path("jobs/<uuid:job_id>/logs", apis.JobLogsApi.as_view(), name="job-logs"),
    path("jobs/<uuid:job_id>/cancel", apis.JobCancelApi.as_view(), name="job-cancel"),
    path("kinds", apis.KindListApi.as_view(), name="kind-list"),
]
