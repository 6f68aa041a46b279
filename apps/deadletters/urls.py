from django.urls import path

from apps.deadletters import apis

urlpatterns = [
    path("dead-letters", apis.DeadLetterListApi.as_view(), name="dead-letter-list"),
    path("dead-letters/<int:letter_id>", apis.DeadLetterDetailApi.as_view(), name="dead-letter-detail"),
    path("dead-letters/<int:letter_id>/redrive", apis.DeadLetterRedriveApi.as_view(), name="dead-letter-redrive"),
    # A client's retry of its own failed job: a redrive of the job's letter (jobs sits below).
    path("jobs/<uuid:job_id>/retry", apis.JobRetryApi.as_view(), name="job-retry"),
]
