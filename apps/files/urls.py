from django.urls import path

from apps.files import apis

urlpatterns = [
    path("uploads", apis.UploadCreateApi.as_view(), name="upload-create"),
    path("uploads/<uuid:upload_id>", apis.UploadDetailApi.as_view(), name="upload-detail"),
    path("uploads/<uuid:upload_id>/content", apis.UploadContentApi.as_view(), name="upload-content"),
    path("jobs/<uuid:job_id>/files/<str:name>", apis.JobFileApi.as_view(), name="job-file"),
]
