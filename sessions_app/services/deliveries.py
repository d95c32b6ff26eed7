"""Deliveries between sessions: operator-side operations.

The dispatcher (delivering pending rows, retries with backoff, failure notices to the
sender) belongs to the delivery feature; this module so far holds what the operator
console needs.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from openclaw_site.errors import InvalidRequestError

from ..models import Delivery


class DeliveryNotRetryableError(InvalidRequestError):
    def __init__(self, delivery_id: str, state: str) -> None:
        super().__init__(
            f"only a failed delivery can be retried: {delivery_id} is {state}",
            details={"code": "DELIVERY_NOT_RETRYABLE", "deliveryId": delivery_id, "state": state},
        )


def delivery_retry(*, delivery: Delivery) -> Delivery:
    """Put a ``failed`` delivery back in the queue: ``pending``, attempts reset, due now.

    The sender was already told about the failure, so ``sender_notified`` stays as it is
    (a second failure does not notify twice). Any other state raises
    :class:`DeliveryNotRetryableError` and changes nothing.
    """
    with transaction.atomic():
        # Conditional update: the dispatcher may touch the row at the same moment.
        retried = Delivery.objects.filter(pk=delivery.pk, state=Delivery.State.FAILED).update(
            state=Delivery.State.PENDING, attempts=0, next_attempt_at=timezone.now(), last_error=""
        )
    delivery.refresh_from_db()
    if not retried:
        raise DeliveryNotRetryableError(delivery.delivery_id, delivery.state)
    return delivery
