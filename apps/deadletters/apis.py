"""Dead letters over the API, for staff only (everyone else: 403)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.deadletters import selectors, services
from apps.deadletters.serializers import DeadLetterFiltersInput, DeadLetterOutput


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
