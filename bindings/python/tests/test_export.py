"""The Python package against real servers: request records and typed errors, the operator calls,
and a real export run with asyncio whose directory and database state is checked (ldap3 and
psycopg), with its progress events, batch reports and log records.

The tests share one server set and run in file order: the queue is read and left untouched until
`test_export_run_writes_the_directory_and_jims_state` exports it.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

import jim_export as jx
from support import (
    Collector,
    assert_directory_matches,
    connect_db,
    directory_state,
    free_port,
    pending_export_counts,
    scalar,
)

PENDING, EXECUTING, FAILED, EXPORTED = 0, 2, 3, 4
CREATE = 0


@pytest.fixture(scope="module")
def engine():
    e = jx.ExportEngine(worker_threads=2)
    yield e
    e.shutdown()
    assert not e.is_running()


@pytest.fixture
def request_(servers) -> jx.ExportRequest:
    """The export request `jim-testkit serve` printed, parsed by the engine."""
    return jx.parse_export_request(servers.request_json)


def test_records_parse_and_default_like_the_engine(servers, request_):
    assert request_.connected_system_id == servers.connected_system_id
    assert request_.directory.urls == [servers.info["ldap_url"]]
    assert isinstance(request_.directory.bind, jx.Bind.SIMPLE)
    assert request_.directory.tls.mode == jx.DirectoryTlsMode.START_TLS
    # Fields left out get the engine's defaults, in records built here and in parsed JSON alike.
    assert jx.RunOptions() == jx.default_run_options() == request_.options
    settings, defaults = jx.ExportSettings(), jx.default_export_settings()
    # An enum field defaults to None in every binding (UniFFI has no enum defaults): the engine reads
    # None as DELETE.
    assert settings.delete_behaviour is None and defaults.delete_behaviour is None
    settings.delete_behaviour = defaults.delete_behaviour
    assert settings == defaults == request_.settings
    db = jx.DatabaseConfig(connection=jx.Secret("postgres://x"))
    assert (db.tls, db.max_connections, db.connect_timeout_ms) == (
        request_.database.tls,
        request_.database.max_connections,
        request_.database.connect_timeout_ms,
    )
    directory = jx.DirectoryConfig(urls=["ldap://x"], bind=jx.Bind.SASL_EXTERNAL())
    parsed = request_.directory
    assert (directory.connect_timeout_ms, directory.operation_timeout_ms, directory.dialect) == (
        parsed.connect_timeout_ms,
        parsed.operation_timeout_ms,
        parsed.dialect,
    )
    assert directory.tls.verify and directory.tls.mode is None
    jx.validate_export_request(request_)
    # JIM's enums keep JIM's numbers.
    assert jx.PendingExportStatus.EXPORTED.value == EXPORTED
    assert jx.ObjectChangeType.EXPORTED.value == 11


def test_secrets_never_print():
    request = jx.ExportRequest(
        database=jx.DatabaseConfig(connection=jx.Secret("postgres://jim:pg-7f3a9c@db/jim")),
        connected_system_id=1,
        directory=jx.DirectoryConfig(
            urls=["ldap://dc1"],
            bind=jx.Bind.SIMPLE(dn="cn=admin,dc=example,dc=org", password=jx.Secret("ldap-7f3a9c")),
        ),
    )
    shown = f"{request} {request!r} {request.database} {request.directory.bind}"
    assert "7f3a9c" not in shown
    assert "cn=admin,dc=example,dc=org" in shown
    assert str(jx.Secret("x")) == repr(jx.Secret("x")) == "***"


def test_queue_summary_before_the_run(servers, engine, request_):
    summary = asyncio.run(engine.queue_summary(request_.database, servers.connected_system_id))
    n = servers.pending_exports
    assert summary.total == summary.executable == summary.due == n
    assert [(c.known_status, c.known_change_type, c.count) for c in summary.by_status] == [
        (jx.PendingExportStatus.PENDING, jx.PendingExportChangeType.CREATE, n)
    ]
    assert summary.stranded_executing == summary.not_yet_due == 0
    assert summary.with_unresolved_references == servers.info["counts"]["reference_bearing_exports"]
    assert summary.oldest_failure is None


def test_invalid_requests_raise_typed_errors(engine, request_):
    bad = request_
    bad.connected_system_id = 0
    bad.directory.urls = ["http://dc1"]
    bad.options.page_size = 0
    bad.settings.delete_behaviour = jx.DeleteBehaviour.DISABLE
    bad.settings.disable_attribute = " "
    with pytest.raises(jx.ExportError.InvalidRequest) as caught:
        asyncio.run(engine.run_export(bad))
    paths = {e.path for e in caught.value.errors}
    assert {
        "connected_system_id",
        "directory.urls[0]",
        "options.page_size",
        "settings.disable_attribute",
    } <= paths, paths
    assert all(e.reason for e in caught.value.errors)
    # The same check without running, and the base class catches every variant.
    with pytest.raises(jx.ExportError):
        jx.validate_export_request(bad)
    with pytest.raises(jx.ExportError.InvalidRequest) as caught:
        jx.parse_export_request('{"database": {"connection": "x"}, "connected_system_id": "seven"}')
    assert [e.path for e in caught.value.errors] == ["connected_system_id"]


def test_unreachable_servers_raise_typed_errors(servers, engine, request_):
    # No PostgreSQL there: a database error that does not show the password.
    port = free_port()
    database = jx.DatabaseConfig(
        connection=jx.Secret(f"postgres://jim:pg-5e1d@127.0.0.1:{port}/jim"), connect_timeout_ms=2000
    )
    with pytest.raises(jx.ExportError.Database) as caught:
        asyncio.run(engine.queue_summary(database, servers.connected_system_id))
    assert "pg-5e1d" not in str(caught.value) and caught.value.reason

    # No directory there, then a wrong password: directory errors of the right kind.
    request_.directory.urls = [f"ldap://127.0.0.1:{free_port()}"]
    request_.directory.tls = jx.DirectoryTls(mode=jx.DirectoryTlsMode.NONE)
    request_.directory.allow_password_without_tls = True
    request_.directory.connect_timeout_ms = 3000
    with pytest.raises(jx.ExportError.Directory) as caught:
        asyncio.run(engine.run_export(request_))
    assert caught.value.kind == jx.DirectoryErrorKind.CONNECT, caught.value

    good = jx.parse_export_request(servers.request_json)
    good.directory.bind = jx.Bind.SIMPLE(dn=servers.info["bind_dn"], password=jx.Secret("wrong-9b2c"))
    with pytest.raises(jx.ExportError.Directory) as caught:
        asyncio.run(engine.run_export(good))
    assert caught.value.kind == jx.DirectoryErrorKind.BIND, caught.value
    assert "wrong-9b2c" not in str(caught.value)

    # A failed start leaves the queue as it was: nothing claimed, nothing stranded.
    assert pending_export_counts(servers.info) == {(PENDING, CREATE): servers.pending_exports}
    assert engine.active_runs() == 0


def test_export_run_writes_the_directory_and_jims_state(servers, engine, request_):
    n = servers.pending_exports
    listener = Collector()
    request_.options.flush_size = 25
    result = asyncio.run(engine.run_export(request_, listener))

    # The result: JIM's ExportExecutionResult fields.
    assert (result.total_pending_exports, result.success_count) == (n, n), result.message
    assert (result.failed_count, result.deferred_count, result.partially_exported_count) == (0, 0, 0)
    assert result.message.startswith(f"Export complete: {n} succeeded, 0 failed, 0 deferred"), result.message
    assert not result.cancelled and not result.dry_run
    assert result.dialect == jx.Dialect.OPEN_LDAP
    assert result.completed_at >= result.started_at
    assert result.metrics.operations.add >= n and result.metrics.sql_statements > 0

    # The directory holds exactly the seeded objects, with their values and memberships.
    assert_directory_matches(directory_state(servers.info), servers.info["expected_directory"])

    # JIM's database: every export Exported, every change ExportedPendingConfirmation after one
    # attempt, each CSO anchored by its entryUUID and still PendingProvisioning, nothing Executing.
    assert pending_export_counts(servers.info) == {(EXPORTED, CREATE): n}
    system = servers.connected_system_id
    changes = scalar(
        servers.info,
        'SELECT count(*) FILTER (WHERE c."Status" <> 1 OR c."ExportAttemptCount" <> 1) '
        'FROM "PendingExportAttributeValueChanges" c JOIN "PendingExports" p ON p."Id" = c."PendingExportId" '
        'WHERE p."ConnectedSystemId" = %s',
        system,
    )
    assert changes == 0
    anchored = scalar(
        servers.info,
        'SELECT count(*) FROM "ConnectedSystemObjects" o '
        'JOIN "ConnectedSystemObjectAttributeValues" v ON v."ConnectedSystemObjectId" = o."Id" '
        'AND v."AttributeId" = o."ExternalIdAttributeId" '
        'WHERE o."ConnectedSystemId" = %s AND o."Status" = 2 AND v."StringValue" IS NOT NULL',
        system,
    )
    assert anchored == n

    # The same state through the engine's operator call.
    summary = asyncio.run(engine.queue_summary(request_.database, system))
    assert [(c.known_status, c.count) for c in summary.by_status] == [(jx.PendingExportStatus.EXPORTED, n)]
    assert summary.executable == summary.stranded_executing == 0

    # Batch reports: one item per export, in flushes of at most 25, with provenance and new anchors.
    items = listener.items()
    assert len(items) == n and len({i.pending_export_id for i in items}) == n
    assert [b.sequence for b in listener.batches] == list(range(1, len(listener.batches) + 1))
    assert all(len(b.items) <= 25 and b.connected_system_id == system for b in listener.batches)
    for item in items:
        assert item.status == jx.ItemStatus.SUCCEEDED and item.provisioned, item
        assert item.change_type == jx.PendingExportChangeType.CREATE
        assert item.object_change_type == jx.ObjectChangeType.EXPORTED
        assert item.source_metaverse_object_id and item.connected_system_object_id
        assert any(a.attribute_name == "entryUUID" and a.new_value for a in item.anchor_changes), item
        assert item.error_message is None and item.written_change_ids

    # Progress from Preparing to Completed, and log records (no errors) on the engine's threads.
    assert listener.progress[0].phase == jx.ExportPhase.PREPARING
    last = listener.progress[-1]
    assert (last.phase, last.processed, last.succeeded) == (jx.ExportPhase.COMPLETED, n, n)
    assert any(r.message.startswith("MetricsCheckpoint: Export") for r in listener.logs)
    assert not [r for r in listener.logs if r.level == jx.LogLevel.ERROR]
    # Not only the run's own lines: the tracing events of the directory and the store reach the
    # listener too (options.log_level unset: debug and above).
    targets = {r.target for r in listener.logs}
    for module in ("jim_export::directory", "jim_export::store"):
        assert any(t.startswith(module) for t in targets), (module, targets)
    assert any(
        r.level == jx.LogLevel.DEBUG and r.message.startswith("connected system's schema loaded")
        for r in listener.logs
    ), listener.logs
    assert threading.get_ident() not in listener.threads


def test_operator_calls_release_stranded_rows_and_reset_failures(servers, engine, request_):
    system = servers.connected_system_id
    with connect_db(servers.info) as conn:
        ids = [r[0] for r in conn.execute(
            'SELECT "Id" FROM "PendingExports" WHERE "ConnectedSystemId" = %s ORDER BY "Id" LIMIT 8', (system,)
        ).fetchall()]
        conn.execute(
            'UPDATE "PendingExports" SET "Status" = 2, "LastAttemptedAt" = now() - interval \'2 hours\' '
            'WHERE "Id" = ANY(%s)',
            (ids[:5],),
        )
        conn.execute(
            'UPDATE "PendingExports" SET "Status" = 3, "ErrorCount" = 5, "LastErrorMessage" = \'boom\', '
            '"LastAttemptedAt" = now() - interval \'1 hour\' WHERE "Id" = ANY(%s)',
            (ids[5:],),
        )
    db = request_.database
    summary = asyncio.run(engine.queue_summary(db, system, lease_seconds=3600))
    assert summary.stranded_executing == 5
    assert summary.oldest_failure is not None
    assert {c.known_status: c.count for c in summary.by_status}[jx.PendingExportStatus.FAILED] == 3

    # A lease longer than the rows' age releases nothing; an hour releases the five.
    assert asyncio.run(engine.release_stranded(db, system, 3 * 3600)) == 0
    assert asyncio.run(engine.release_stranded(db, system, 3600)) == 5
    assert asyncio.run(engine.reset_failed(db, system)) == 3
    counts = pending_export_counts(servers.info)
    assert counts[(PENDING, CREATE)] == 8 and (EXECUTING, CREATE) not in counts and (FAILED, CREATE) not in counts
    assert scalar(
        servers.info,
        'SELECT count(*) FROM "PendingExports" WHERE "Id" = ANY(%s) AND "ErrorCount" = 0 AND "LastErrorMessage" IS NULL',
        ids,
    ) == 8
    # Operator calls on an unknown system find nothing.
    assert asyncio.run(engine.reset_failed(db, 999_999)) == 0
