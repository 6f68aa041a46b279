"""Dead letters over the API, for staff only (everyone else: 403); and a client's retry of
its own failed job, which is a redrive of that job's letter (POST /api/v1/jobs/{id}/retry)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import IsAdminUser, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.deadletters import selectors, services
from apps.deadletters.serializers import DeadLetterFiltersInput, DeadLetterOutput
from apps.jobs import selectors as job_selectors
from apps.jobs.serializers import ErrorResponse, JobOutput


class DeadLetterPagination(CursorPagination):
    ordering = "-created_at"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class DeadLetterListApi(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(
        parameters=[DeadLetterFiltersInput], responses=DeadLetterOutput(many=True), operation_id="dead_letters_list"
    )
    def get(self, request: Request) -> Response:
        filters = DeadLetterFiltersInput(data=request.query_params)
        filters.is_valid(raise_exception=True)
        letters = selectors.dead_letter_list(filters=selectors.DeadLetterFilters(**filters.validated_data))
        paginator = DeadLetterPagination()
        page = paginator.paginate_queryset(letters, request, view=self)
        return paginator.get_paginated_response(DeadLetterOutput(page, many=True).data)


class DeadLetterDetailApi(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(responses=DeadLetterOutput, operation_id="dead_letters_retrieve")
    def get(self, request: Request, letter_id: int) -> Response:
        return Response(DeadLetterOutput(selectors.dead_letter_get(letter_id=letter_id)).data)

    @extend_schema(responses=DeadLetterOutput, operation_id="dead_letters_discard")
    def delete(self, request: Request, letter_id: int) -> Response:
        letter = selectors.dead_letter_get(letter_id=letter_id)
        resolution = services.dead_letter_discard(letter_id=letter.pk, actor=request.user.get_username())
        body = DeadLetterOutput(resolution.letter).data
        return Response({**body, "changed": resolution.changed}, status=status.HTTP_200_OK)


class DeadLetterRedriveApi(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(request=None, responses={202: DeadLetterOutput}, operation_id="dead_letters_redrive")
    def post(self, request: Request, letter_id: int) -> Response:
        letter = selectors.dead_letter_get(letter_id=letter_id)
        resolution = services.dead_letter_redrive(letter_id=letter.pk, actor=request.user.get_username())
        body = DeadLetterOutput(resolution.letter).data
        # 202 when the job was queued again now; 200 when an earlier redrive already had.
        code = status.HTTP_202_ACCEPTED if resolution.changed else status.HTTP_200_OK
        return Response({**body, "changed": resolution.changed}, status=code)


class JobRetryApi(APIView):
    """The owner's retry of a failed job: the redrive of its open dead letter, so the job
    runs again with a fresh allowance of attempts exactly as a staff redrive would (a failed
    workflow re-opens the same way). Only a failed job can be retried: a cancelled or
    succeeded one, or one still on its way, answers 409 job_not_failed."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=None,
        responses={202: JobOutput, **{code: ErrorResponse for code in (401, 404, 409, 429)}},
        parameters=[OpenApiParameter("job_id", OpenApiTypes.UUID, OpenApiParameter.PATH)],
        operation_id="jobs_retry",
        description=(
            "Run the caller's failed job again with a fresh allowance of attempts (its dead letter is "
            "redriven). 409 job_not_failed when the job is not failed; 409 dead_letter_closed when an "
            "operator discarded its dead letter."
        ),
    )
    def post(self, request: Request, job_id: str) -> Response:
        job = job_selectors.job_get(owner=request.user, job_id=job_id)
        job = services.job_retry(job=job, actor=request.user.get_username())
        return Response(JobOutput(job, context={"request": request}).data, status=status.HTTP_202_ACCEPTED)
