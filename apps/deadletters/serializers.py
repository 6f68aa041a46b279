from __future__ import annotations

from rest_framework import serializers

from apps.deadletters.models import DeadLetter


class DeadLetterFiltersInput(serializers.Serializer):
    state = serializers.ChoiceField(choices=DeadLetter.State.choices, required=False, default=DeadLetter.State.OPEN)
    kind = serializers.CharField(max_length=100, required=False)
    error_type = serializers.CharField(max_length=200, required=False)
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)


class DeadLetterOutput(serializers.ModelSerializer):
    job_id = serializers.UUIDField()
    error = serializers.SerializerMethodField()

    class Meta:
        model = DeadLetter
        fields = [
            "id",
            "job_id",
            "kind",
            "state",
            "attempts",
            "payload",
            "error",
            "errors",
            "traceback",
            "created_at",
            "resolved_at",
            "resolved_by",
        ]
        read_only_fields = fields

    def get_error(self, letter: DeadLetter) -> dict[str, str]:
        return {"type": letter.error_type, "message": letter.error_message}
