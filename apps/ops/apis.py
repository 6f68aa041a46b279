"""Queues and kinds over the API, for staff only (everyone else: 403): each queue's state,
and pausing or resuming a queue or a kind (apps.jobs.pauses)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.jobs import pauses
from apps.ops.selectors import QueueFigures, queue_figures


class QueueOutput(serializers.Serializer):
    name = serializers.CharField()
    paused = serializers.BooleanField()
    depth = serializers.IntegerField(
        allow_null=True, help_text="Messages on the queue's Redis lists; null when Redis did not answer."
    )
    oldest_age_seconds = serializers.FloatField(
        help_text="Age of the oldest queued job (due now) in PostgreSQL; 0 when none."
    )
    paused_by = serializers.CharField(allow_blank=True)
    paused_at = serializers.DateTimeField(allow_null=True)
    held = serializers.IntegerField(
        allow_null=True,
        help_text="Jobs waiting in PostgreSQL for their turn in the queue's window (fair dispatch); "
        "null when no dispatcher keeps a window now.",
    )
    window = serializers.IntegerField(
        allow_null=True, help_text="How many messages the dispatcher lets wait in Redis at once; null as `held`."
    )


class KindStateOutput(serializers.Serializer):
    name = serializers.CharField()
    paused = serializers.BooleanField()
    paused_by = serializers.CharField(allow_blank=True)
    paused_at = serializers.DateTimeField(allow_null=True)


def _queue(name: str) -> QueueFigures:
    [figures] = queue_figures([name])
    return figures


def _kind(state: pauses.PauseState) -> dict:
    return KindStateOutput(
        {"name": state.name, "paused": state.paused, "paused_by": state.paused_by, "paused_at": state.paused_at}
    ).data


def _actor(request: Request) -> str:
    return request.user.get_username()


class QueueListApi(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(responses=QueueOutput(many=True), operation_id="queues_list")
    def get(self, request: Request) -> Response:
        return Response(QueueOutput(queue_figures(pauses.job_queues()), many=True).data)


class QueuePauseApi(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(request=None, responses=QueueOutput, operation_id="queues_pause")
    def post(self, request: Request, name: str) -> Response:
        pauses.queue_pause(name=name, actor=_actor(request))
        return Response(QueueOutput(_queue(name)).data)


class QueueResumeApi(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(request=None, responses=QueueOutput, operation_id="queues_resume")
    def post(self, request: Request, name: str) -> Response:
        pauses.queue_resume(name=name, actor=_actor(request))
        return Response(QueueOutput(_queue(name)).data)


class KindPauseApi(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(request=None, responses=KindStateOutput, operation_id="kinds_pause")
    def post(self, request: Request, name: str) -> Response:
        return Response(_kind(pauses.kind_pause(name=name, actor=_actor(request))))


class KindResumeApi(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(request=None, responses=KindStateOutput, operation_id="kinds_resume")
    def post(self, request: Request, name: str) -> Response:
        return Response(_kind(pauses.kind_resume(name=name, actor=_actor(request))))
