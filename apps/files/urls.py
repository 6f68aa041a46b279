from django.urls import path

from apps.files import apis

urlpatterns = [
    path("uploads", apis.UploadCreateApi.as_view(), name="upload-create"),
    path("jobs/<uuid:job_id>/files/<str:name>", apis.JobFileApi.as_view(), name="job-file"),
]
