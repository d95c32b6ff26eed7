"""Query vocabulary of the sessions app."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone


class SessionQuerySet(models.QuerySet):
    def for_agent(self, agent_id: str):
        return self.filter(agent_id=agent_id)

    def busy(self):
        return self.filter(state="busy")

    def idle(self):
        return self.filter(state="idle")

    def active_within(self, minutes: int):
        return self.filter(updated_at__gte=timezone.now() - timezone.timedelta(minutes=minutes))


class RunQuerySet(models.QuerySet):
    def active(self):
        return self.filter(status__in=["queued", "running"])

    def queued(self):
        return self.filter(status="queued")

    def running(self):
        return self.filter(status="running")

    def lease_expired(self, now=None):
        now = now or timezone.now()
        return self.filter(status="running").filter(Q(lease_expires_at__lt=now) | Q(lease_expires_at__isnull=True))


class SystemEventQuerySet(models.QuerySet):
    def pending(self):
        return self.filter(consumed_at__isnull=True)

    def for_session(self, session_key: str):
        return self.filter(session_key=session_key)


class DeliveryQuerySet(models.QuerySet):
    def pending(self):
        return self.filter(state="pending")

    def for_target(self, session_key: str):
        return self.filter(target_session_key=session_key)

    def due(self, now=None):
        now = now or timezone.now()
        return self.pending().filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
