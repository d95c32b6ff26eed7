"""``{% dashboard_cards %}``: the operator counts, on the admin index and the dashboard page."""

from django import template

from ..dashboard import dashboard_counts

register = template.Library()


@register.inclusion_tag("admin/_dashboard_cards.html")
def dashboard_cards():
    return {"counts": dashboard_counts()}
