"""The embedded default's channel layer: channels' in-memory layer, made to scale.

channels' ``InMemoryChannelLayer`` sweeps every channel and every group membership for
expired entries at each ``group_send`` and ``receive``, and starts a task per member of
a group. With 1,000 busy sessions (a group each) that is quadratic in the number of
events. Here the sweep runs at most once per ``sweep_interval_s``, a group send puts the
message straight into each member's queue, and a full queue is logged instead of
swallowed (the event stays in ``SessionEvent``; a client resumes by sequence number).
"""

from __future__ import annotations

import logging
import time

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer

logger = logging.getLogger(__name__)


class GatewayInMemoryChannelLayer(InMemoryChannelLayer):
    sweep_interval_s = 1.0

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._swept_at = 0.0

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._swept_at < self.sweep_interval_s:
            return
        self._swept_at = now
        super()._clean_expired()

    async def group_send(self, group: str, message: dict) -> None:
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        for channel in list(self.groups.get(group, ())):
            try:
                await self.send(channel, message)
            except ChannelFull:
                logger.warning("channel %s is full (capacity %s): an event of %s was not delivered live",
                               channel, self.get_capacity(channel), group)  # fmt: skip
