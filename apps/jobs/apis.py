"""Thin API views: validate input, call one service or selector, serialize the output."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.jobs import selectors, services
from apps.jobs.registry import registry
from apps.jobs.serializers import JobDetailOutput, JobListFilters, JobOutput, JobSubmitInput


class JobCursorPagination(CursorPagination):
    ordering = "-created_at"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


def _request_id(request: Request) -> str:
    return request.headers.get("X-Request-ID", "")[:64]


class JobListCreateApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(parameters=[JobListFilters], responses=JobOutput(many=True), operation_id="jobs_list")
    def get(self, request: Request) -> Response:
        filters = JobListFilters(data=request.query_params)
        filters.is_valid(raise_exception=True)
        jobs = selectors.job_list(owner=request.user, filters=selectors.JobFilters(**filters.validated_data))
        paginator = JobCursorPagination()
        page = paginator.paginate_queryset(jobs, request, view=self)
        return paginator.get_paginated_response(JobOutput(page, many=True, context={"request": request}).data)

    @extend_schema(request=JobSubmitInput, responses={202: JobOutput}, operation_id="jobs_submit")
    def post(self, request: Request) -> Response:
        data = JobSubmitInput(data=request.data)
        data.is_valid(raise_exception=True)
        key = request.headers.get("Idempotency-Key")
        headers: dict[str, str] = {}
        if key is None:
            job = services.job_submit(owner=request.user, request_id=_request_id(request), **data.validated_data)
            code = status.HTTP_202_ACCEPTED
        else:
            submission = services.job_submit_idempotent(
                owner=request.user, idempotency_key=key, request_id=_request_id(request), **data.validated_data
            )
            job, code = submission.job, submission.status_code
            headers["Idempotent-Replayed"] = "true" if submission.replayed else "false"
        headers["Location"] = request.build_absolute_uri(reverse("job-detail", args=[job.id]))
        return Response(JobOutput(job, context={"request": request}).data, status=code, headers=headers)


class JobDetailApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        responses=JobDetailOutput,
        operation_id="jobs_retrieve",
        parameters=[OpenApiParameter("id", str, OpenApiParameter.PATH)],
    )
    def get(self, request: Request, job_id: str) -> Response:
        job = selectors.job_get(owner=request.user, job_id=job_id)
        return Response(JobDetailOutput(job, context={"request": request}).data)


class JobCancelApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(request=None, responses={202: JobOutput, 409: None}, operation_id="jobs_cancel")
    def post(self, request: Request, job_id: str) -> Response:
        job = selectors.job_get(owner=request.user, job_id=job_id)
        job = services.job_cancel(job=job)
        return Response(JobOutput(job, context={"request": request}).data, status=status.HTTP_202_ACCEPTED)


class KindListApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: dict}, operation_id="kinds_list")
    def get(self, request: Request) -> Response:
        return Response({"kinds": [k.describe() for k in registry]})
