"""A listener that raises never stops a run, and a dry run writes nothing. Each test has its own
servers, since a run changes the queue."""

from __future__ import annotations

import asyncio

import jim_export as jx
from support import Collector, assert_directory_matches, directory_state, pending_export_counts

PENDING, EXPORTED = 0, 4
CREATE = 0


def test_a_listener_that_raises_does_not_stop_the_run(fresh_servers):
    engine = jx.ExportEngine()
    request = jx.parse_export_request(fresh_servers.request_json)
    listener = Collector(fail=True)
    result = asyncio.run(engine.run_export(request, listener))
    engine.shutdown()
    n = fresh_servers.pending_exports
    assert result.success_count == n and result.failed_count == 0, result.message
    assert listener.progress and listener.batches, "the listener was called although it raises"
    assert pending_export_counts(fresh_servers.info) == {(EXPORTED, CREATE): n}
    assert_directory_matches(directory_state(fresh_servers.info), fresh_servers.info["expected_directory"])


def test_a_dry_run_writes_nothing(fresh_servers):
    engine = jx.ExportEngine()
    request = jx.parse_export_request(fresh_servers.request_json)
    request.options.dry_run = True
    # The host sets the least severe record it wants: nothing below a warning arrives.
    request.options.log_level = jx.LogLevel.WARN
    listener = Collector()
    result = asyncio.run(engine.run_export(request, listener))
    engine.shutdown()
    assert listener.batches, "the listener was called"
    assert all(r.level in (jx.LogLevel.WARN, jx.LogLevel.ERROR) for r in listener.logs), listener.logs
    assert result.dry_run and not result.cancelled
    assert pending_export_counts(fresh_servers.info) == {(PENDING, CREATE): fresh_servers.pending_exports}
    assert directory_state(fresh_servers.info) == {}
