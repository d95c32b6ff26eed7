"""Answers to ``session/request_permission`` by policy (``acp.permissionPolicy``).

- ``approve-reads`` (default): allow tools whose kind is ``read`` or ``search``, reject the rest
  (a tool of unknown kind is rejected);
- ``approve-all``: allow everything;
- ``deny-all``: reject everything.

Allowing picks the harness's ``allow_once`` option (else ``allow_always``); rejecting picks
``reject_once`` (else ``reject_always``). A harness that offers no option of the wanted
kind gets the ``cancelled`` outcome, which ACP agents treat as a refusal.
"""

from __future__ import annotations

from dataclasses import dataclass

from acp.schema import AllowedOutcome, DeniedOutcome, PermissionOption, RequestPermissionResponse

POLICIES = ("approve-reads", "approve-all", "deny-all")
DEFAULT_POLICY = "approve-reads"
READ_KINDS = frozenset({"read", "search"})
_ALLOW_KINDS = ("allow_once", "allow_always")
_REJECT_KINDS = ("reject_once", "reject_always")


@dataclass(frozen=True)
class PermissionDecision:
    """What the policy answered for one tool call."""

    policy: str
    tool_kind: str | None
    allowed: bool
    option_id: str | None

    def as_dict(self) -> dict:
        return {"policy": self.policy, "toolKind": self.tool_kind, "allowed": self.allowed, "optionId": self.option_id}


def policy_allows(policy: str, tool_kind: str | None) -> bool:
    """True when ``policy`` lets a tool of ``tool_kind`` run."""
    if policy == "approve-all":
        return True
    if policy == "deny-all":
        return False
    return tool_kind in READ_KINDS


def decide_permission(
    *, policy: str, tool_kind: str | None, options: list[PermissionOption]
) -> tuple[RequestPermissionResponse, PermissionDecision]:
    """The ACP response to a permission request and the decision it records."""
    allowed = policy_allows(policy, tool_kind)
    option = _pick(options, _ALLOW_KINDS if allowed else _REJECT_KINDS)
    if option is None:
        response = RequestPermissionResponse(outcome=DeniedOutcome(outcome="cancelled"))
        return response, PermissionDecision(policy, tool_kind, False, None)
    response = RequestPermissionResponse(outcome=AllowedOutcome(outcome="selected", option_id=option.option_id))
    return response, PermissionDecision(policy, tool_kind, allowed, option.option_id)


def _pick(options: list[PermissionOption], kinds: tuple[str, ...]) -> PermissionOption | None:
    for kind in kinds:
        for option in options:
            if option.kind == kind:
                return option
    return None
