"""Files over the API: uploads in, the files a job made out, each to its owner only."""

from __future__ import annotations

import mimetypes
from typing import Any

from django.core.files.storage import default_storage
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.errors import NotFound
from apps.files import selectors, services
from apps.files.serializers import UploadInput, UploadOutput
from apps.jobs import selectors as job_selectors
from apps.jobs.serializers import ErrorResponse


class UploadCreateApi(APIView):
    permission_classes = [IsAuthenticated]
    parser_classes = [MultiPartParser]

    @extend_schema(
        request={"multipart/form-data": UploadInput},
        responses={201: UploadOutput, **{code: ErrorResponse for code in (400, 401, 413, 415, 429)}},
        operation_id="uploads_create",
        description=(
            "Upload a file (multipart/form-data, field `file`, at most UPLOAD_MAX_BYTES) for a job of a kind "
            "that takes one: submit the job with the upload's `id` in its payload (e.g. images.thumbnail's "
            "`upload_id`). Only the uploader's jobs may use it."
        ),
    )
    def post(self, request: Request) -> Response:
        data = UploadInput(data=request.data)
        data.is_valid(raise_exception=True)
        upload = services.upload_create(owner=request.user, file=data.validated_data["file"])
        output = UploadOutput(upload, context={"request": request}).data
        return Response(output, status=status.HTTP_201_CREATED, headers={"Location": output["links"]["self"]})


class UploadDetailApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        responses={200: UploadOutput, **{code: ErrorResponse for code in (401, 404, 429)}},
        operation_id="uploads_retrieve",
        description="One of the client's uploads: its size, SHA-256, media type and links. Anyone else's is 404.",
    )
    def get(self, request: Request, upload_id: str) -> Response:
        upload = selectors.upload_get(owner=request.user, upload_id=upload_id)
        return Response(UploadOutput(upload, context={"request": request}).data)


class UploadContentApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        responses={
            (200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY, description="The upload's bytes."),
            **{code: ErrorResponse for code in (401, 404, 429)},
        },
        operation_id="uploads_content_retrieve",
        description="The bytes of one of the client's uploads, as an attachment. Anyone else's is 404.",
    )
    def get(self, request: Request, upload_id: str) -> Any:
        upload = selectors.upload_get(owner=request.user, upload_id=upload_id)
        try:
            handle = upload.file.open("rb")
        except (FileNotFoundError, OSError):
            raise NotFound("The upload's bytes are gone.", code="upload_not_found") from None
        extension = mimetypes.guess_extension(upload.content_type) or ""
        # An attachment under the declared media type, never rendered inline: the client
        # chose the type, and an upload is not a page of this site.
        return FileResponse(
            handle, as_attachment=True, filename=f"upload-{upload.id}{extension}", content_type=upload.content_type
        )

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        # The answer is the file whatever Accept says; errors still leave as JSON.
        return super().perform_content_negotiation(request, force=True)


class JobFileApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        responses={
            (200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY, description="The file's bytes."),
            **{code: ErrorResponse for code in (401, 404, 429)},
        },
        parameters=[OpenApiParameter("job_id", OpenApiTypes.UUID, OpenApiParameter.PATH)],
        operation_id="jobs_files_retrieve",
        description="A file the job made, named by a `file` entry of its result; for the job's owner only.",
    )
    def get(self, request: Request, job_id: str, name: str) -> Any:
        job = job_selectors.job_get(owner=request.user, job_id=job_id)
        if name not in job_selectors.result_file_names(job.result):
            raise NotFound("The job has no file of that name.", code="file_not_found")
        path = selectors.job_file_path(job.id, name)
        try:
            handle = default_storage.open(path, "rb")
        except (FileNotFoundError, OSError):
            raise NotFound("The job's file is gone.", code="file_not_found") from None
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        # An attachment, never rendered inline: a file a job made is not a page of this site.
        return FileResponse(handle, as_attachment=True, filename=name, content_type=content_type)

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        # The answer is the file whatever Accept says; errors still leave as JSON.
        return super().perform_content_negotiation(request, force=True)
