"""Thin API views for schedules: validate input, call one service or selector, serialize."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.jobs.apis import JobCursorPagination, _errors
from apps.schedules import selectors, services
from apps.schedules.serializers import ScheduleCreateInput, ScheduleOutput, SchedulePageOutput, ScheduleUpdateInput

_COMMON_ERRORS = (401, 429)
_ID = OpenApiParameter("schedule_id", OpenApiTypes.UUID, OpenApiParameter.PATH)


def _timing_args(data: dict) -> dict:
    """The serializer's names as the services take them (`timezone` is a module there)."""
    if "timezone" in data:
        data["timezone_name"] = data.pop("timezone")
    return data


class ScheduleListCreateApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        responses={200: SchedulePageOutput, **_errors(400, *_COMMON_ERRORS)},
        operation_id="schedules_list",
        parameters=[OpenApiParameter("page_size", int, OpenApiParameter.QUERY)],
    )
    def get(self, request: Request) -> Response:
        paginator = JobCursorPagination()
        page = paginator.paginate_queryset(selectors.schedule_list(owner=request.user), request, view=self)
        return paginator.get_paginated_response([ScheduleOutput.of(s, request=request) for s in page])

    @extend_schema(
        request=ScheduleCreateInput,
        responses={201: ScheduleOutput, **_errors(400, 403, 413, 415, *_COMMON_ERRORS)},
        examples=[
            OpenApiExample(
                "weekdays at nine in Berlin",
                value={"kind": "diagnostics.noop", "payload": {}, "cron": "0 9 * * 1-5", "timezone": "Europe/Berlin"},
                request_only=True,
            ),
            OpenApiExample(
                "every minute",
                value={"kind": "diagnostics.noop", "payload": {}, "every_seconds": 60},
                request_only=True,
            ),
        ],
        operation_id="schedules_create",
        description=(
            "Make a schedule: a job of `kind` with `payload` at each time of `cron` (in `timezone`) or every "
            "`every_seconds`. The payload is checked against the kind's schema at once."
        ),
    )
    def post(self, request: Request) -> Response:
        data = ScheduleCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        schedule = services.schedule_create(
            owner=request.user, from_client=True, **_timing_args(dict(data.validated_data))
        )
        body = ScheduleOutput.of(schedule, request=request)
        return Response(body, status=status.HTTP_201_CREATED, headers={"Location": body["links"]["self"]})


class ScheduleDetailApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        responses={200: ScheduleOutput, **_errors(404, *_COMMON_ERRORS)},
        operation_id="schedules_retrieve",
        parameters=[_ID],
    )
    def get(self, request: Request, schedule_id: str) -> Response:
        schedule = selectors.schedule_get(owner=request.user, schedule_id=schedule_id)
        return Response(ScheduleOutput.of(schedule, request=request))

    @extend_schema(
        request=ScheduleUpdateInput,
        responses={200: ScheduleOutput, **_errors(400, 403, 404, 413, 415, *_COMMON_ERRORS)},
        operation_id="schedules_update",
        parameters=[_ID],
        description='Change any of a schedule\'s fields; `{"enabled": false}` stops it, `true` starts it again.',
    )
    def patch(self, request: Request, schedule_id: str) -> Response:
        schedule = selectors.schedule_get(owner=request.user, schedule_id=schedule_id)
        data = ScheduleUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        schedule = services.schedule_update(schedule=schedule, changes=dict(data.validated_data), from_client=True)
        return Response(ScheduleOutput.of(schedule, request=request))

    @extend_schema(
        request=None,
        responses={204: OpenApiResponse(description="Deleted."), **_errors(404, *_COMMON_ERRORS)},
        operation_id="schedules_delete",
        parameters=[_ID],
    )
    def delete(self, request: Request, schedule_id: str) -> Response:
        schedule = selectors.schedule_get(owner=request.user, schedule_id=schedule_id)
        services.schedule_delete(schedule=schedule)
        return Response(status=status.HTTP_204_NO_CONTENT)
