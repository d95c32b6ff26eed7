"""The gateway listens on loopback by default; wider without auth it refuses to start
unless ``--allow-unauthenticated`` is given, and then warns (log and stderr)."""

from __future__ import annotations

import io
import logging

import pytest
from django.core.management import CommandError, call_command

from openclaw_site.config import override_config
from sessions_app.management.commands.gateway import Command, is_loopback

NO_AUTH = {"gateway": {"auth": {"mode": "none"}}}
TOKEN = {"gateway": {"auth": {"mode": "token", "token": "t"}}}


def test_default_host_is_loopback():
    parser = Command().create_parser("manage.py", "gateway")
    assert parser.parse_args([]).host == "127.0.0.1"


@pytest.mark.parametrize(
    ("host", "expected"),
    [("127.0.0.1", True), ("127.8.9.1", True), ("localhost", True), ("::1", True), ("[::1]", True),
     ("0.0.0.0", False), ("::", False), ("192.168.1.5", False), ("gateway.example", False), ("", False)],
)  # fmt: skip
def test_is_loopback(host, expected):
    assert is_loopback(host) is expected


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.2"])
def test_wide_bind_without_auth_refuses_to_start(host):
    with override_config(NO_AUTH), pytest.raises(CommandError, match="refusing to start.*--allow-unauthenticated"):
        call_command("gateway", host=host, port=0, role="web")


def test_wide_bind_without_auth_but_allowed_warns_in_log_and_on_stderr(caplog):
    stderr = io.StringIO()
    command = Command(stderr=stderr)
    with override_config(NO_AUTH), caplog.at_level(logging.WARNING):
        command._check_bind("0.0.0.0", True)
    assert "UNAUTHENTICATED GATEWAY" in stderr.getvalue() and "0.0.0.0" in stderr.getvalue()
    assert any("UNAUTHENTICATED GATEWAY" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(("config", "host"), [(TOKEN, "0.0.0.0"), (NO_AUTH, "127.0.0.1"), (NO_AUTH, "localhost")])
def test_no_warning_with_auth_or_on_loopback(config, host, caplog):
    stderr = io.StringIO()
    with override_config(config), caplog.at_level(logging.WARNING):
        Command(stderr=stderr)._check_bind(host, False)
    assert stderr.getvalue() == "" and not caplog.records

