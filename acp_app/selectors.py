"""Reads of ACP sessions and hub-delegated workers (spec-b §6.2, §6.3, §6.5).

A worker counts as delegated iff its ``AcpSession.owner_session_key`` is set (the
``hubDelegated`` marker); a closed worker has it cleared. Ownership is an exact match
of the requester's canonical key with the owner; a row whose ``spawned_by`` or
``parent_session_key`` names someone else is a lineage mismatch and authorises nobody.
Labels match exactly and case-sensitively; a label that matches only after case folding
is missing (one candidate) or ambiguous (several).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone

from .exceptions import DelegateAmbiguousError, DelegateLineageError, DelegateNotFoundError
from .models import AcpSession

IDLE_EXPIRED = "delegate-idle-expired"
MAX_AGE_EXPIRED = "delegate-max-age-expired"


def _config():
    from openclaw_site.config import get_config

    return get_config()


def owner_key_of(session_key: str) -> str:
    """The canonical store key of a requester (``main`` → its agent's main key)."""
    from sessions_app import keys

    return keys.resolve_session_store_key(cfg=_config(), session_key=session_key.strip())


# --- policy and expiry --------------------------------------------------------------------


@dataclass(frozen=True)
class DelegatePolicy:
    """``acp.delegate`` limits in minutes (0 = no limit)."""

    idle_minutes: int
    max_age_minutes: int


def delegate_policy() -> DelegatePolicy:
    block = (_config().acp or {}).get("delegate") or {}
    idle = max(0, int(block.get("idleMinutes", 72 * 60) or 0))
    return DelegatePolicy(idle_minutes=idle, max_age_minutes=max(0, int(block.get("maxAgeMinutes", 168 * 60) or 0)))


@dataclass(frozen=True)
class DelegateExpiry:
    last_activity_at: datetime
    idle_expires_at: datetime | None
    max_age_expires_at: datetime | None
    reason: str | None  # IDLE_EXPIRED / MAX_AGE_EXPIRED when expired at ``now``


def last_activity_of(acp: AcpSession) -> datetime:
    """``max(delegatedAt, lastActivityAt)``, else ``max(delegatedAt, session.updatedAt)``."""
    created = acp.delegated_at or acp.created_at
    other = acp.last_activity_at or acp.session.updated_at
    return max(created, other) if other else created


def delegate_expiry(acp: AcpSession, *, now: datetime | None = None, policy: DelegatePolicy | None = None) -> DelegateExpiry:
    """When the worker expires, and why it already has (max age is checked first)."""
    now = now or timezone.now()
    policy = policy or delegate_policy()
    created = acp.delegated_at or acp.created_at
    last = last_activity_of(acp)
    max_age_at = created + timedelta(minutes=policy.max_age_minutes) if policy.max_age_minutes else None
    idle_at = last + timedelta(minutes=policy.idle_minutes) if policy.idle_minutes else None
    reason = None
    if max_age_at is not None and max_age_at <= now:
        reason = MAX_AGE_EXPIRED
    elif idle_at is not None and idle_at <= now:
        reason = IDLE_EXPIRED
    return DelegateExpiry(last, idle_at, max_age_at, reason)


# --- queries ------------------------------------------------------------------------------


def delegate_queryset() -> QuerySet[AcpSession]:
    """Every open hub-delegated worker (marker set, not closed), with its session."""
    return (
        AcpSession.objects.select_related("session")
        .filter(owner_session_key__isnull=False)
        .exclude(owner_session_key="")
        .exclude(state=AcpSession.State.CLOSED)
    )


def delegate_list_all() -> list[AcpSession]:
    """Every open worker across owners (operators), newest activity first."""
    return list(delegate_queryset().order_by("-session__updated_at", "-id"))


def delegate_list_for_owner(*, owner_session_key: str) -> list[AcpSession]:
    """The open workers of one owner, newest activity first; lineage mismatches are left out."""
    owner = owner_key_of(owner_session_key)
    rows = delegate_queryset().filter(owner_session_key=owner).order_by("-session__updated_at", "-id")
    return [acp for acp in rows if lineage_ok(acp)]


def lineage_ok(acp: AcpSession) -> bool:
    session = acp.session
    return all(value in (None, "", acp.owner_session_key) for value in (session.spawned_by, session.parent_session_key))


def check_lineage(acp: AcpSession) -> None:
    """Raise :class:`DelegateLineageError` for a drifted ``spawnedBy``/``parentSessionKey``."""
    for field, value in (("spawnedBy", acp.session.spawned_by), ("parentSessionKey", acp.session.parent_session_key)):
        if value and value != acp.owner_session_key:
            raise DelegateLineageError(acp.session.key, field)


def delegate_get(*, owner_session_key: str, label: str) -> AcpSession:
    """The owner's open worker with exactly this (trimmed) label.

    Raises :class:`DelegateNotFoundError` (also for a case-folded-only single match),
    :class:`DelegateAmbiguousError` or :class:`DelegateLineageError`.
    """
    owner = owner_key_of(owner_session_key)
    wanted = (label or "").strip()
    rows = delegate_queryset().filter(owner_session_key=owner)
    exact = list(rows.filter(session__label=wanted)[:2])
    if len(exact) > 1:
        raise DelegateAmbiguousError(wanted, [acp.session.key for acp in exact])
    if not exact:
        folded = [acp.session.key for acp in rows.filter(session__label__iexact=wanted)[:5]]
        if len(folded) > 1:
            raise DelegateAmbiguousError(wanted, folded)
        raise DelegateNotFoundError(wanted, owner=owner)
    check_lineage(exact[0])
    return exact[0]


def delegate_get_by_key(*, session_key: str) -> AcpSession:
    """The open worker of a session key (operators: any owner)."""
    acp = delegate_queryset().filter(session__key=session_key.strip()).first()
    if acp is None:
        raise DelegateNotFoundError(session_key.strip())
    return acp


def delegates_expired(*, now: datetime, policy: DelegatePolicy | None = None) -> list[tuple[AcpSession, str]]:
    """Workers past max age or idle past the limit at ``now``, with the reason.

    Two indexed range queries, (state, last_activity_at) and (delegated_at), so the cost
    follows the number of expired workers, not the number of sessions."""
    policy = policy or delegate_policy()
    candidates: dict[int, AcpSession] = {}
    open_states = (AcpSession.State.IDLE, AcpSession.State.ERROR, AcpSession.State.RUNNING)
    if policy.max_age_minutes:
        cutoff = now - timedelta(minutes=policy.max_age_minutes)
        for acp in delegate_queryset().filter(delegated_at__lte=cutoff):
            candidates[acp.pk] = acp
    if policy.idle_minutes:
        cutoff = now - timedelta(minutes=policy.idle_minutes)
        idle = Q(state__in=open_states, last_activity_at__lte=cutoff) | Q(last_activity_at__isnull=True, delegated_at__lte=cutoff)
        for acp in delegate_queryset().filter(idle):
            candidates.setdefault(acp.pk, acp)
    expired = [(acp, delegate_expiry(acp, now=now, policy=policy).reason) for acp in candidates.values()]
    return [(acp, reason) for acp, reason in expired if reason]


def acp_session_of(*, session_key: str) -> AcpSession | None:
    """The ACP metadata of a session key, if it is ACP-backed."""
    return AcpSession.objects.select_related("session").filter(session__key=session_key).first()


# --- shapes --------------------------------------------------------------------------------


def _ms(value: datetime | None) -> int | None:
    return int(value.timestamp() * 1000) if value else None


def iso(value: datetime | None) -> str:
    return value.astimezone(dt_timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z") if value else "never"


def delegate_row(acp: AcpSession, *, now: datetime | None = None) -> dict[str, Any]:
    """One worker as the wire shows it (list, status, ``sessions_list({delegated: true})``)."""
    expiry = delegate_expiry(acp, now=now)
    return {
        "label": acp.session.label, "sessionKey": acp.session.key, "agent": acp.harness_agent,
        "harness": acp.harness_agent, "state": acp.state, "mode": acp.mode, "owner": acp.owner_session_key,
        "delegatedAt": _ms(acp.delegated_at), "lastActivityAt": _ms(expiry.last_activity_at),
        "idleExpiresAt": _ms(expiry.idle_expires_at), "maxAgeExpiresAt": _ms(expiry.max_age_expires_at),
        "expiresAt": _ms(min((t for t in (expiry.idle_expires_at, expiry.max_age_expires_at) if t), default=None)),
        "cwd": acp.cwd, "upstreamSessionId": acp.upstream_session_id, "lastError": acp.last_error or None,
    }  # fmt: skip


def delegate_status(*, owner_session_key: str, label: str) -> dict[str, Any]:
    """The status of the owner's worker with this label (raises like :func:`delegate_get`)."""
    return delegate_row(delegate_get(owner_session_key=owner_session_key, label=label))
