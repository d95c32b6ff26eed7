"""Tools for tests only, registered when ``OPENCLAW_TEST_TOOLS=1`` is in the environment.

``test_sleep {ms, text}`` waits ``ms`` milliseconds, then returns ``{text, sleptMs}``:
with two calls of different lengths in one model step, tests see that each result is
recorded and published as soon as it is done.
"""

from __future__ import annotations

import asyncio
import os

from . import ToolContext, agent_tool

if os.environ.get("OPENCLAW_TEST_TOOLS") == "1":

    @agent_tool(
        "test_sleep",
        description="Test tool: wait ms milliseconds, then return the text.",
        parameters={
            "type": "object",
            "properties": {"ms": {"type": "integer", "minimum": 0, "maximum": 60000}, "text": {"type": "string"}},
            "required": ["ms"],
            "additionalProperties": False,
        },
    )
    async def test_sleep(ctx: ToolContext, args: dict) -> dict:
        await asyncio.sleep(args["ms"] / 1000)
        return {"text": args.get("text", ""), "sleptMs": args["ms"]}
