"""Secure by default, from Python: a simple bind's password over ldap:// without TLS is refused unless
the request allows it explicitly, and then every run warns; a database connection whose TLS is not
verified (the test cluster's URL has no sslmode, so libpq's `prefer`) is warned about once per
engine. The runs are dry runs: they read the queue and the directory's root DSE, and write nothing.
"""

from __future__ import annotations

import asyncio

import pytest

import jim_export as jx
from support import Collector

CLEAR = "sent in clear"
UNVERIFIED = "does not verify the server's certificate"


def warnings(listener: Collector, text: str) -> list[jx.LogRecord]:
    return [r for r in listener.logs if r.level == jx.LogLevel.WARN and text in r.message]


def test_a_password_without_tls_is_refused_unless_allowed_and_then_warned_about(servers):
    request = jx.parse_export_request(servers.request_json)
    request.directory.tls = jx.DirectoryTls(mode=jx.DirectoryTlsMode.NONE)
    request.options.dry_run = True
    with pytest.raises(jx.ExportError.InvalidRequest) as caught:
        jx.validate_export_request(request)
    refusal = [e for e in caught.value.errors if e.path == "directory.bind"]
    assert refusal and "in clear" in refusal[0].reason, caught.value.errors
    assert "allow_password_without_tls" in refusal[0].reason
    assert servers.info["bind_password"] not in str(caught.value)

    engine = jx.ExportEngine()
    try:
        with pytest.raises(jx.ExportError.InvalidRequest):
            asyncio.run(engine.run_export(request))
        # Explicitly allowed: it runs, and says so on every run.
        request.directory.allow_password_without_tls = True
        first, second = Collector(), Collector()
        asyncio.run(engine.run_export(request, first))
        asyncio.run(engine.run_export(request, second))
        assert len(warnings(first, CLEAR)) == 1, [r.message for r in first.logs]
        assert len(warnings(second, CLEAR)) == 1, [r.message for r in second.logs]
        # The unverified database connection: once for the engine, not once per run.
        assert len(warnings(first, UNVERIFIED)) == 1, [r.message for r in first.logs]
        assert not warnings(second, UNVERIFIED)
    finally:
        engine.shutdown()

    # A verified directory connection (the servers' StartTLS with their CA) raises no such warning;
    # a new engine warns about the database once again.
    engine = jx.ExportEngine()
    try:
        secure = jx.parse_export_request(servers.request_json)
        secure.options.dry_run = True
        listener = Collector()
        asyncio.run(engine.run_export(secure, listener))
        assert not warnings(listener, CLEAR)
        assert len(warnings(listener, UNVERIFIED)) == 1
    finally:
        engine.shutdown()
