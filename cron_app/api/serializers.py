"""Input and output shapes of the wake / system-event REST doors (for the OpenAPI doc)."""

from __future__ import annotations

from rest_framework import serializers


class WakeInput(serializers.Serializer):
    mode = serializers.ChoiceField(choices=["now", "next-heartbeat"])
    text = serializers.CharField()
    sessionKey = serializers.CharField(required=False)
    agentId = serializers.CharField(required=False)


class OkOutput(serializers.Serializer):
    ok = serializers.BooleanField()


class SystemEventInput(serializers.Serializer):
    text = serializers.CharField()
    sessionKey = serializers.CharField(required=False)
    agentId = serializers.CharField(required=False)
    wake = serializers.BooleanField(required=False, help_text="Wake the session now with a heartbeat.")


class SystemEventPostOutput(OkOutput):
    sessionKey = serializers.CharField(required=False)


class SystemEventOutput(serializers.Serializer):
    id = serializers.IntegerField()
    sessionKey = serializers.CharField()
    agentId = serializers.CharField()
    text = serializers.CharField()
    contextKey = serializers.CharField(allow_null=True)
    origin = serializers.CharField()
    createdAtMs = serializers.IntegerField()
    consumedAtMs = serializers.IntegerField(allow_null=True)
    consumedByRunId = serializers.CharField(allow_null=True)


class SystemEventListOutput(serializers.Serializer):
    sessionKey = serializers.CharField()
    events = SystemEventOutput(many=True)


class SystemEventListQuery(serializers.Serializer):
    includeConsumed = serializers.BooleanField(required=False, default=False)


def system_event_row(event) -> dict:
    def ms(value):
        return int(value.timestamp() * 1000) if value else None

    return {
        "id": event.pk, "sessionKey": event.session_key, "agentId": event.agent_id, "text": event.text,
        "contextKey": event.context_key, "origin": event.origin, "createdAtMs": ms(event.created_at),
        "consumedAtMs": ms(event.consumed_at), "consumedByRunId": event.consumed_by_run_id,
    }  # fmt: skip
