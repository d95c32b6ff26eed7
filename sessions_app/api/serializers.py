"""Shapes of the REST surface: query parsers, and plain Input/Output serializers for the docs.

JSON bodies are NOT run through these serializers: they go untouched to the RPC method,
whose schema validates them (so ``null`` still means "clear" and absent "keep" in a
patch, and the error messages are the gateway's own). Query strings have no types, so
the ``*Query`` serializers coerce them (``?limit=5`` → ``5``) before the RPC call. The
Output serializers document the payloads, which are the RPC results as they are.
"""

from __future__ import annotations

from rest_framework import serializers


def _str(**kwargs):
    return serializers.CharField(required=False, **kwargs)


def _int(**kwargs):
    return serializers.IntegerField(required=False, **kwargs)


def _bool(**kwargs):
    return serializers.BooleanField(required=False, **kwargs)


class ErrorBodyOutput(serializers.Serializer):
    code = serializers.CharField(help_text="Wire code: INVALID_REQUEST, FORBIDDEN, UNAVAILABLE, AGENT_TIMEOUT…")
    message = serializers.CharField()
    details = serializers.DictField(required=False, help_text="`details.code` is the finer machine code.")
    retryable = serializers.BooleanField(required=False)


class ErrorEnvelopeOutput(serializers.Serializer):
    error = ErrorBodyOutput()


# --- queries -------------------------------------------------------------------


class SessionListQuery(serializers.Serializer):
    limit = _int(min_value=1)
    offset = _int(min_value=0)
    activeMinutes = _int(min_value=1)
    includeGlobal = _bool()
    includeUnknown = _bool()
    includeDerivedTitles = _bool()
    includeLastMessage = _bool()
    label = _str()
    spawnedBy = _str()
    agentId = _str()
    search = _str()
    archived = _bool()


class SessionResolveQuery(serializers.Serializer):
    key = _str()
    sessionId = _str()
    label = _str()
    agentId = _str()
    spawnedBy = _str()
    includeGlobal = _bool()
    includeUnknown = _bool()


class SessionGetQuery(serializers.Serializer):
    limit = _int(min_value=1)


class TranscriptQuery(serializers.Serializer):
    limit = _int(min_value=1, max_value=1000, help_text="Newest messages to return (default 200).")
    offset = _int(min_value=0, help_text="Skip this many newest messages (paging back).")
    maxChars = _int(min_value=1, max_value=500_000)
    maxBytes = _int(min_value=1024)


class SessionDeleteQuery(serializers.Serializer):
    deleteTranscript = _bool()


# --- bodies (documentation only) -------------------------------------------------


class SessionCreateInput(serializers.Serializer):
    key = _str(help_text="Default `agent:<agent>:dashboard:<uuid>`.")
    agentId = _str()
    label = _str(max_length=64)
    model = _str()
    parentSessionKey = _str()
    task = _str(help_text="Optional first message (sent like chat.send).")
    message = _str()


class SessionPatchInput(serializers.Serializer):
    """Absent = keep, ``null`` = clear, a value = validate and set."""

    label = _str(allow_null=True, max_length=64)
    sendPolicy = serializers.ChoiceField(choices=["allow", "deny"], required=False, allow_null=True)
    model = _str(allow_null=True)
    thinkingLevel = _str(allow_null=True)
    verboseLevel = _str(allow_null=True)
    reasoningLevel = _str(allow_null=True)
    elevatedLevel = _str(allow_null=True)
    responseUsage = _str(allow_null=True)
    queueMode = _str(allow_null=True)
    spawnedBy = _str(allow_null=True)
    spawnDepth = _int(allow_null=True, min_value=0)


class SessionResetInput(serializers.Serializer):
    reason = serializers.ChoiceField(choices=["new", "reset"], required=False)


class ChatInjectInput(serializers.Serializer):
    message = serializers.CharField()
    label = _str(max_length=100)
    createIfMissing = _bool()


# --- outputs (documentation only) ------------------------------------------------


class HealthOutput(serializers.Serializer):
    ok = serializers.BooleanField()
    ts = serializers.IntegerField()
    defaultAgentId = serializers.CharField()
    agents = serializers.ListField(child=serializers.DictField())
    sessions = serializers.DictField()


class AgentRowOutput(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField(required=False)
    default = serializers.BooleanField(required=False)
    model = serializers.CharField(required=False)


class AgentListOutput(serializers.Serializer):
    defaultId = serializers.CharField()
    mainKey = serializers.CharField(required=False)
    scope = serializers.CharField(required=False)
    agents = AgentRowOutput(many=True)


class SessionRowOutput(serializers.Serializer):
    key = serializers.CharField()
    kind = serializers.CharField()
    label = serializers.CharField(required=False, allow_null=True)
    displayName = serializers.CharField(required=False)
    sessionId = serializers.CharField()
    updatedAt = serializers.IntegerField(help_text="Milliseconds since the epoch.")
    sendPolicy = serializers.CharField(required=False, allow_null=True)
    model = serializers.CharField(required=False, allow_null=True)
    spawnedBy = serializers.CharField(required=False, allow_null=True)
    inputTokens = serializers.IntegerField(required=False)
    outputTokens = serializers.IntegerField(required=False)
    totalTokens = serializers.IntegerField(required=False)


class SessionListOutput(serializers.Serializer):
    ts = serializers.IntegerField()
    path = serializers.CharField()
    count = serializers.IntegerField()
    defaults = serializers.DictField()
    sessions = SessionRowOutput(many=True)


class SessionResolveOutput(serializers.Serializer):
    ok = serializers.BooleanField()
    key = serializers.CharField()


class SessionEntryOutput(serializers.Serializer):
    ok = serializers.BooleanField()
    key = serializers.CharField()
    entry = SessionRowOutput()


class SessionCreateOutput(SessionEntryOutput):
    sessionId = serializers.CharField()
    runStarted = serializers.BooleanField()
    runId = serializers.CharField(required=False)


class MessageOutput(serializers.Serializer):
    role = serializers.CharField()
    content = serializers.ListField(child=serializers.DictField())
    timestamp = serializers.IntegerField(required=False)


class SessionGetOutput(serializers.Serializer):
    ok = serializers.BooleanField()
    key = serializers.CharField()
    session = SessionRowOutput()
    messages = MessageOutput(many=True)


class SessionDeleteOutput(serializers.Serializer):
    ok = serializers.BooleanField()
    key = serializers.CharField()
    deleted = serializers.BooleanField()
    archived = serializers.ListField(child=serializers.CharField())


class TranscriptOutput(serializers.Serializer):
    sessionKey = serializers.CharField()
    sessionId = serializers.CharField(allow_null=True, help_text="null when the session does not exist yet.")
    messages = MessageOutput(many=True)
    totalMessages = serializers.IntegerField()
    hasMore = serializers.BooleanField()
    nextOffset = serializers.IntegerField(required=False, allow_null=True)


class ChatInjectOutput(serializers.Serializer):
    ok = serializers.BooleanField()
    messageId = serializers.CharField()
