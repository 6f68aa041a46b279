"""Thin API views: validate input, call one service or selector, serialize the output."""

from __future__ import annotations

from typing import Any

from django.http import StreamingHttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.errors import InvalidInput
from apps.jobs import joblogs, lifecycle, notify, polling, selectors, streams
from apps.jobs.registry import registry
from apps.jobs.serializers import (
    BATCH_MAX_JOBS,
    JOB_FIELD_MAX_CHARS,
    LIST_FIELD_MAX_CHARS,
    ErrorResponse,
    JobBatchItemOutput,
    JobBatchOutput,
    JobBatchSubmitInput,
    JobDetailOutput,
    JobListFilters,
    JobListItemOutput,
    JobOutput,
    JobPageOutput,
    JobSubmitInput,
    KindListOutput,
    list_include,
)
from apps.jobs.serializers.logs import JobLogFilters, JobLogLineOutput, JobLogPageOutput


class JobCursorPagination(CursorPagination):
    ordering = "-created_at"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def get_page_size(self, request: Request) -> int:
        # DRF clamps page_size=500 to 200 and reads page_size=0 or "abc" as the default, so
        # a client never learns its page is not the size it asked for: refuse instead.
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None or raw == "":
            return self.page_size
        try:
            size = int(raw)
        except ValueError:
            size = 0
        if not 1 <= size <= self.max_page_size:
            raise InvalidInput(
                f"page_size must be a whole number from 1 to {self.max_page_size}; got {raw[:50]!r}.",
                code="invalid_page_size",
                details={"min": 1, "max": self.max_page_size},
            )
        return size


def _request_id(request: Request) -> str:
    return request.headers.get("X-Request-ID", "")[:64]


def _errors(*codes: int) -> dict[int, Any]:
    """The error body (apps.core.errors) for each status an operation may answer with."""
    return {code: ErrorResponse for code in codes}


def polling_parameters(noun: str) -> list[OpenApiParameter]:
    """The long poll's `wait` and the conditional GET's If-None-Match, as the schema shows them
    for a job or a workflow."""
    return [
        OpenApiParameter(
            "wait",
            {"type": "number", "minimum": 0, "maximum": notify.WAIT_MAX_SECONDS},
            OpenApiParameter.QUERY,
            description=(
                f"Hold the request up to this many seconds (0 to {notify.WAIT_MAX_SECONDS}) until the {noun} "
                "changes from If-None-Match (or from its state when the request arrived), or ends."
            ),
        ),
        OpenApiParameter(
            "If-None-Match",
            str,
            OpenApiParameter.HEADER,
            description=f"The ETag of the last answer: 304 with no body while the {noun} is unchanged.",
        ),
    ]


# Every authenticated operation may answer 401 (no or bad token) and 429 (request throttle).
_COMMON_ERRORS = (401, 429)


class JobListCreateApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        parameters=[
            JobListFilters,
            OpenApiParameter(
                "include",
                str,
                OpenApiParameter.QUERY,
                description=(
                    "Comma-separated: payload, result. A row leaves both out unless named here; a named one "
                    f"whose JSON text is over {LIST_FIELD_MAX_CHARS} characters comes as null, listed in "
                    "the row's truncated."
                ),
            ),
        ],
        responses={200: JobPageOutput, **_errors(400, *_COMMON_ERRORS)},
        operation_id="jobs_list",
    )
    def get(self, request: Request) -> Response:
        filters = JobListFilters(data=request.query_params)
        filters.is_valid(raise_exception=True)
        include = list_include(request.query_params.get("include"))
        jobs = selectors.job_list(owner=request.user, filters=selectors.JobFilters(**filters.validated_data))
        # Payload and result stay in PostgreSQL unless asked for, and then come bounded.
        jobs = selectors.with_bounded_json(
            jobs.only(*JobListItemOutput.COLUMNS), fields=sorted(include), max_chars=LIST_FIELD_MAX_CHARS
        )
        paginator = JobCursorPagination()
        page = paginator.paginate_queryset(jobs, request, view=self)
        context = {"request": request, "include": include}
        return paginator.get_paginated_response(JobListItemOutput(page, many=True, context=context).data)

    @extend_schema(
        request=JobSubmitInput,
        responses={
            202: JobOutput,
            200: OpenApiResponse(
                JobDetailOutput,
                description=(
                    "A duplicate of a unique kind's job (header Job-Deduplicated: true): the job that holds the "
                    "key, as GET shows it; no job was made. Also an Idempotency-Key replay of such an answer."
                ),
            ),
            **_errors(400, 413, 415, 422, 409, 503, *_COMMON_ERRORS),
        },
        examples=[
            OpenApiExample("sleep", value={"kind": "diagnostics.sleep", "payload": {"seconds": 2}}, request_only=True),
        ],
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                description="Submit once per key for 24 hours; a retry with the same key gets the same job back.",
            )
        ],
        operation_id="jobs_submit",
    )
    def post(self, request: Request) -> Response:
        spec = JobSubmitInput.simple_job(request.data)
        if spec is None:
            data = JobSubmitInput(data=request.data)
            data.is_valid(raise_exception=True)
            spec = data.validated_data
        key = request.headers.get("Idempotency-Key")
        headers: dict[str, str] = {}
        if key is None:
            job = lifecycle.job_submit(owner=request.user, request_id=_request_id(request), from_client=True, **spec)
            deduplicated = lifecycle.job_deduplicated(job)
            code = status.HTTP_200_OK if deduplicated else status.HTTP_202_ACCEPTED
        else:
            submission = lifecycle.job_submit_idempotent(
                owner=request.user, idempotency_key=key, request_id=_request_id(request), from_client=True, **spec
            )
            job, code, deduplicated = submission.job, submission.status_code, submission.deduplicated
            headers["Idempotent-Replayed"] = "true" if submission.replayed else "false"
        if deduplicated:
            # The job that holds the kind's unique key, answered as GET /api/v1/jobs/{id} shows it.
            headers["Location"] = request.build_absolute_uri(reverse("job-detail", args=[job.id]))
            headers[lifecycle.DEDUPLICATED_HEADER] = "true"
            job = selectors.job_get(owner=request.user, job_id=job.id, max_json_chars=JOB_FIELD_MAX_CHARS)
            return Response(JobDetailOutput(job, context={"request": request}).data, status=code, headers=headers)
        if job.kind in registry and registry.get(job.kind).unique_by:
            headers[lifecycle.DEDUPLICATED_HEADER] = "false"
        data = JobOutput(job, context={"request": request}).data
        # The job's own link is its Location: the URL already resolved for the body.
        headers["Location"] = data["links"]["self"]
        return Response(data, status=code, headers=headers)


def _batch_errors(errors: Any) -> Any:
    """DRF's errors for a batch, as one entry per bad job, named by its index."""
    items = errors.get("jobs") if isinstance(errors, dict) else None
    if isinstance(items, list):  # older DRF: one entry per job, empty for the good ones
        items = dict(enumerate(items))
    if not isinstance(items, dict) or not all(isinstance(i, int) and isinstance(e, dict) for i, e in items.items()):
        return errors
    return [
        {
            "index": index,
            "code": "invalid_input",
            "message": "; ".join(f"{field}: {' '.join(str(m) for m in messages)}" for field, messages in item.items()),
            "details": item,
        }
        for index, item in sorted(items.items())
        if item
    ]


class JobBatchSubmitApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=JobBatchSubmitInput,
        responses={202: JobBatchOutput, **_errors(400, 413, 415, 503, *_COMMON_ERRORS)},
        examples=[
            OpenApiExample(
                "two jobs",
                value={"jobs": [{"kind": "diagnostics.noop", "payload": {}}, {"kind": "diagnostics.noop"}]},
                request_only=True,
            ),
        ],
        operation_id="jobs_submit_batch",
        description=(
            f"Submit up to {BATCH_MAX_JOBS} jobs in one transaction, all or nothing: a 400 lists every bad job "
            "by its index and submits none. The answer lists the jobs in the order given, each with "
            "`deduplicated`: true when its kind is unique and another job held its key (that job is the item, "
            "and no job was made for it; an item repeating an earlier one's key is its duplicate). "
            "Idempotency-Key is not supported here (400): retry a failed batch as a whole only when it "
            "answered 4xx/5xx, or submit jobs one by one with keys."
        ),
    )
    def post(self, request: Request) -> Response:
        if "Idempotency-Key" in request.headers:
            raise InvalidInput(
                "Idempotency-Key is not supported for batches; submit jobs one by one to use it.",
                code="idempotency_not_supported",
            )
        raw = request.data.get("jobs") if isinstance(request.data, dict) else None
        if isinstance(raw, list) and len(raw) > BATCH_MAX_JOBS:
            raise InvalidInput(
                f"A batch holds at most {BATCH_MAX_JOBS} jobs; this one has {len(raw)}. Split it into smaller batches.",
                code="batch_too_large",
                details={"max_jobs": BATCH_MAX_JOBS, "jobs": len(raw)},
            )
        specs = JobBatchSubmitInput.simple_jobs(request.data)
        if specs is None:
            data = JobBatchSubmitInput(data=request.data)
            if not data.is_valid():
                raise InvalidInput(
                    "The batch is not valid, so no job was submitted; see details (one entry per bad job, by index).",
                    code="invalid_batch",
                    details=_batch_errors(data.errors),
                )
            specs = data.validated_data["jobs"]
        jobs = lifecycle.job_submit_batch(
            owner=request.user, jobs=specs, request_id=_request_id(request), from_client=True
        )
        # Each item says whether it was deduplicated (a unique kind's key was held): still a 202.
        body = {"jobs": JobBatchItemOutput(jobs, many=True, context={"request": request}).data}
        return Response(body, status=status.HTTP_202_ACCEPTED)


# --- one job: conditional GET, Retry-After, long poll (apps.jobs.polling) ----------------


class JobDetailApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        responses={
            200: JobDetailOutput,
            304: OpenApiResponse(description="Not modified: the job still matches If-None-Match."),
            **_errors(400, 404, *_COMMON_ERRORS),
        },
        operation_id="jobs_retrieve",
        parameters=[
            OpenApiParameter("job_id", OpenApiTypes.UUID, OpenApiParameter.PATH),
            *polling_parameters("job"),
        ],
    )
    def get(self, request: Request, job_id: str) -> Any:
        not_modified = polling.not_modified(request, job_id=job_id)
        if not_modified is not None:
            return not_modified
        job = selectors.job_get(owner=request.user, job_id=job_id, max_json_chars=JOB_FIELD_MAX_CHARS)
        headers = polling.headers(polling.JobVersion.of(job))
        return Response(JobDetailOutput(job, context={"request": request}).data, headers=headers)


class JobEventsApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                OpenApiTypes.STR,
                description=(
                    "Server-sent events: `job` (the job as GET /api/v1/jobs/{id} shows it; its `id` is the job's "
                    "ETag) at once and at each change, `end` once it has finished. The stream lasts at most "
                    "`wait` seconds; reconnect with Last-Event-ID to go on (apps/jobs/streams.py)."
                ),
            ),
            **_errors(400, 404, *_COMMON_ERRORS),
        },
        operation_id="jobs_events",
        parameters=[
            OpenApiParameter("job_id", OpenApiTypes.UUID, OpenApiParameter.PATH),
            OpenApiParameter("wait", OpenApiTypes.NUMBER, description="How long the stream lasts, at most 30 s."),
        ],
    )
    def get(self, request: Request, job_id: str) -> StreamingHttpResponse:
        events = streams.job_event_stream(request, job_id=job_id)
        response = StreamingHttpResponse(events, content_type="text/event-stream; charset=utf-8")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # a proxy that buffers answers must not hold the events
        return response

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        # An EventSource asks for text/event-stream; errors still leave as JSON.
        return super().perform_content_negotiation(request, force=True)


class JobCancelApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=None,
        responses={202: JobOutput, **_errors(404, 409, *_COMMON_ERRORS)},
        operation_id="jobs_cancel",
        parameters=[OpenApiParameter("job_id", OpenApiTypes.UUID, OpenApiParameter.PATH)],
    )
    def post(self, request: Request, job_id: str) -> Response:
        job = selectors.job_get(owner=request.user, job_id=job_id)
        job = lifecycle.job_cancel(job=job)
        return Response(JobOutput(job, context={"request": request}).data, status=status.HTTP_202_ACCEPTED)


class JobLogPagination(JobCursorPagination):
    ordering = "id"  # the order written: by attempt, then as logged (apps.jobs.joblogs)
    page_size = 200
    max_page_size = 1000


class JobLogsApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        parameters=[
            OpenApiParameter("job_id", OpenApiTypes.UUID, OpenApiParameter.PATH),
            JobLogFilters,
            OpenApiParameter("cursor", str, description="The page to read: from a page's next or previous link."),
            OpenApiParameter("page_size", int, description=f"Lines per page, 1 to {JobLogPagination.max_page_size}."),
        ],
        responses={200: JobLogPageOutput, **_errors(400, 404, *_COMMON_ERRORS)},
        operation_id="jobs_logs",
        description="What the job's handler logged, oldest first, each line under the attempt that logged it.",
    )
    def get(self, request: Request, job_id: str) -> Response:
        filters = JobLogFilters(data=request.query_params)
        filters.is_valid(raise_exception=True)
        lines = joblogs.job_log_lines(owner=request.user, job_id=job_id, **filters.validated_data)
        paginator = JobLogPagination()
        page = paginator.paginate_queryset(lines, request, view=self)
        return paginator.get_paginated_response(JobLogLineOutput(page, many=True).data)


class KindListApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: KindListOutput, **_errors(*_COMMON_ERRORS)}, operation_id="kinds_list")
    def get(self, request: Request) -> Response:
        # Internal kinds (the platform's own, such as webhook delivery) are not a client's.
        return Response({"kinds": [k.describe() for k in registry.public()]})
