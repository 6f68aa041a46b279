"""Thin API views for workflows: validate input, call one service or selector, serialize."""

from __future__ import annotations

import time
from typing import Any

from django.db import connection
from django.http import HttpResponseNotModified
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.errors import InvalidInput
from apps.jobs import notify, polling
from apps.jobs.apis import JobCursorPagination, _errors, _request_id, polling_parameters
from apps.workflows import selectors, services
from apps.workflows.graph import WORKFLOW_MAX_JOBS
from apps.workflows.serializers import WorkflowOutput, WorkflowPageOutput, WorkflowSubmitInput, WorkflowSummaryOutput

_COMMON_ERRORS = (401, 429)
_ID = OpenApiParameter("workflow_id", OpenApiTypes.UUID, OpenApiParameter.PATH)


class WorkflowListCreateApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        responses={200: WorkflowPageOutput, **_errors(400, *_COMMON_ERRORS)},
        operation_id="workflows_list",
        parameters=[OpenApiParameter("page_size", int, OpenApiParameter.QUERY)],
    )
    def get(self, request: Request) -> Response:
        paginator = JobCursorPagination()
        page = paginator.paginate_queryset(selectors.workflow_list(owner=request.user), request, view=self)
        return paginator.get_paginated_response([WorkflowSummaryOutput.of(w, request=request) for w in page])

    @extend_schema(
        request=WorkflowSubmitInput,
        responses={202: WorkflowOutput, **_errors(400, 403, 413, 415, 503, *_COMMON_ERRORS)},
        examples=[
            OpenApiExample(
                "a chain",
                value={
                    "name": "fetch then notify",
                    "jobs": [
                        {"ref": "a", "kind": "diagnostics.noop", "payload": {}},
                        {"ref": "b", "kind": "diagnostics.noop", "payload": {}, "depends_on": ["a"]},
                    ],
                },
                request_only=True,
            )
        ],
        operation_id="workflows_submit",
        description=(
            f"Start up to {WORKFLOW_MAX_JOBS} jobs that depend on one another, in one transaction, all or "
            "nothing. Jobs without dependencies are queued at once, the others wait."
        ),
    )
    def post(self, request: Request) -> Response:
        if "Idempotency-Key" in request.headers:
            raise InvalidInput(
                "Idempotency-Key is not supported for workflows; retry a workflow only when it answered 4xx/5xx.",
                code="idempotency_not_supported",
            )
        raw = request.data.get("jobs") if isinstance(request.data, dict) else None
        if isinstance(raw, list) and len(raw) > WORKFLOW_MAX_JOBS:
            raise InvalidInput(
                f"A workflow holds at most {WORKFLOW_MAX_JOBS} jobs; this one has {len(raw)}.",
                code="workflow_too_large",
                details={"max_jobs": WORKFLOW_MAX_JOBS, "jobs": len(raw)},
            )
        data = WorkflowSubmitInput(data=request.data)
        if not data.is_valid():
            raise InvalidInput(
                "The workflow is not valid, so nothing was submitted; see details.",
                code="invalid_workflow",
                details=data.errors,
            )
        workflow = services.workflow_submit(
            owner=request.user, request_id=_request_id(request), from_client=True, **data.validated_data
        )
        jobs = selectors.workflow_jobs(workflow=workflow)
        headers = {"Location": request.build_absolute_uri(reverse("workflow-detail", args=[workflow.id]))}
        body = WorkflowOutput.of(workflow, request=request, jobs=jobs)
        return Response(body, status=status.HTTP_202_ACCEPTED, headers=headers)


class WorkflowDetailApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        responses={
            200: WorkflowOutput,
            304: OpenApiResponse(description="Not modified: the workflow still matches If-None-Match."),
            **_errors(400, 404, *_COMMON_ERRORS),
        },
        operation_id="workflows_retrieve",
        parameters=[
            _ID,
            *polling_parameters("workflow"),
        ],
    )
    def get(self, request: Request, workflow_id: str) -> Any:
        unchanged = _not_modified(request, workflow_id=workflow_id)
        if unchanged is not None:
            return unchanged
        detail = selectors.workflow_detail(owner=request.user, workflow_id=workflow_id)
        body = WorkflowOutput.of(detail.workflow, request=request, jobs=detail.jobs)
        return Response(body, headers=polling.headers(detail.version))  # type: ignore[arg-type]


class WorkflowCancelApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=None,
        responses={202: WorkflowOutput, **_errors(404, 409, *_COMMON_ERRORS)},
        operation_id="workflows_cancel",
        parameters=[_ID],
    )
    def post(self, request: Request, workflow_id: str) -> Response:
        workflow = selectors.workflow_get(owner=request.user, workflow_id=workflow_id)
        workflow = services.workflow_cancel(workflow=workflow)
        body = WorkflowOutput.of(workflow, request=request, jobs=selectors.workflow_jobs(workflow=workflow))
        return Response(body, status=status.HTTP_202_ACCEPTED)


# --- polling: the job detail's machinery (apps.jobs.polling), on the workflow's version ----


def _wait_for_change(*, owner: Any, workflow_id: str, seconds: float, tags: set[str]) -> selectors.WorkflowVersion:
    """Hold the request until the workflow differs from what the client has, ends, or
    `seconds` pass. Its doorbell rings on every release and finish (apps.workflows.release);
    a job merely starting does not ring, and is seen at the deadline."""
    deadline = time.monotonic() + seconds
    with notify.JobWaiter(workflow_id) as waiter:
        version = selectors.workflow_version(owner=owner, workflow_id=workflow_id)
        baseline = tags or {version.etag.removeprefix("W/")}
        while waiter.active and not version.terminal and polling.matches(baseline, version.etag):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if not connection.in_atomic_block:
                connection.close()  # wait without holding a database connection
            rang = waiter.wait(remaining)
            version = selectors.workflow_version(owner=owner, workflow_id=workflow_id)
            if not rang:
                break
    return version


def _not_modified(request: Request, *, workflow_id: str) -> HttpResponseNotModified | None:
    wait = polling.wait_seconds(request.query_params.get("wait"))
    tags = polling.if_none_match(request.headers.get("If-None-Match", ""))
    version = None
    if wait > 0:
        version = _wait_for_change(owner=request.user, workflow_id=workflow_id, seconds=wait, tags=tags)
    elif tags:
        version = selectors.workflow_version(owner=request.user, workflow_id=workflow_id)
    if version is None or not tags or not polling.matches(tags, version.etag):
        return None
    response = HttpResponseNotModified()
    for name, value in polling.headers(version).items():  # type: ignore[arg-type]
        response[name] = value
    return response
