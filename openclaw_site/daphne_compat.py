"""Let daphne close WebSockets with the protocol's own close codes (1002, 1008, 1009 …).

The OpenClaw protocol closes a refused handshake with 1008 or 1002 and an oversized
pre-connect frame with 1009: RFC 6455 codes a server may send. Autobahn's public
``sendClose`` (which daphne's ``serverClose`` calls) only takes 1000 and 3000–4999, so
those closes raised inside daphne and the client saw 1011 instead. Sending the close
frame directly keeps the code the consumer chose.
"""

from __future__ import annotations

# Close codes an endpoint may send (RFC 6455 §7.4.1 and the IANA registry).
SENDABLE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})


def install() -> None:
    """Patch ``daphne.ws_protocol.WebSocketProtocol.serverClose`` once per process."""
    try:
        from daphne.ws_protocol import WebSocketProtocol
    except ImportError:  # another ASGI server
        return
    if getattr(WebSocketProtocol, "_openclaw_close_codes", False):
        return
    original = WebSocketProtocol.serverClose

    def server_close(self, code=None):
        if code in SENDABLE_CODES or (isinstance(code, int) and 3000 <= code <= 4999):
            self.sendCloseFrame(code=code, isReply=False)
            return
        original(self, code)

    WebSocketProtocol.serverClose = server_close
    WebSocketProtocol._openclaw_close_codes = True
