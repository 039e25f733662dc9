"""Continuous export ("watch") from Python: a watch started on an empty queue picks up a pending
export staged while it runs (with the notifying trigger, then by polling), reports it, and stops
through its `CancelToken` leaving nothing `Executing`.

The seeded exports are moved aside first ("parked"), then put back one at a time in one transaction
each, as JIM stages them.
"""

from __future__ import annotations

import asyncio
import time

import pytest

import jim_export as jx
from support import Collector, connect_db, pending_export_counts

EXECUTING, EXPORTED = 2, 4


@pytest.fixture(scope="module")
def parked(servers):
    """Parks every pending export of the system; yields the ids of plain user Creates to stage."""
    system = servers.connected_system_id
    with connect_db(servers.info) as conn:
        conn.execute('CREATE TABLE parked_pe (LIKE "PendingExports")')
        conn.execute('CREATE TABLE parked_avc (LIKE "PendingExportAttributeValueChanges")')
        with conn.transaction():
            conn.execute(
                'INSERT INTO parked_avc SELECT c.* FROM "PendingExportAttributeValueChanges" c '
                'JOIN "PendingExports" p ON p."Id" = c."PendingExportId" WHERE p."ConnectedSystemId" = %s',
                (system,),
            )
            conn.execute(
                'DELETE FROM "PendingExportAttributeValueChanges" c USING "PendingExports" p '
                'WHERE p."Id" = c."PendingExportId" AND p."ConnectedSystemId" = %s',
                (system,),
            )
            conn.execute(
                'INSERT INTO parked_pe SELECT * FROM "PendingExports" WHERE "ConnectedSystemId" = %s',
                (system,),
            )
            conn.execute('DELETE FROM "PendingExports" WHERE "ConnectedSystemId" = %s', (system,))
        ids = [
            row[0]
            for row in conn.execute(
                'SELECT "Id" FROM parked_pe WHERE "ChangeType" = 0 AND NOT "HasUnresolvedReferences" '
                'ORDER BY "CreatedAt", "Id"'
            ).fetchall()
        ]
    assert len(ids) >= 2
    return ids


def stage(info: dict, export_id) -> None:
    """Puts one parked export back, with its changes, in one transaction."""
    with connect_db(info) as conn, conn.transaction():
        conn.execute(
            'INSERT INTO "PendingExports" SELECT * FROM parked_pe WHERE "Id" = %s', (export_id,)
        )
        conn.execute(
            'INSERT INTO "PendingExportAttributeValueChanges" SELECT * FROM parked_avc '
            'WHERE "PendingExportId" = %s',
            (export_id,),
        )


def status(info: dict, export_id):
    with connect_db(info) as conn:
        row = conn.execute(
            'SELECT "Status" FROM "PendingExports" WHERE "Id" = %s', (export_id,)
        ).fetchone()
    return row and row[0]


async def watch_one(servers, export_id, options: jx.WatchOptions) -> tuple[jx.WatchResult, Collector]:
    """Starts a watch, stages `export_id` once it runs, waits until it is exported, stops the watch."""
    engine = jx.ExportEngine()
    request = jx.parse_export_request(servers.request_json)
    token = jx.CancelToken()
    listener = Collector()
    task = asyncio.create_task(
        engine.watch(jx.WatchRequest(requests=[request], watch=options), token, listener)
    )
    await asyncio.sleep(0.5)
    assert not task.done(), "the watch keeps running on an empty queue"
    await asyncio.to_thread(stage, servers.info, export_id)
    deadline = time.monotonic() + 30
    while await asyncio.to_thread(status, servers.info, export_id) != EXPORTED:
        assert time.monotonic() < deadline, "the staged export was not exported within 30 s"
        await asyncio.sleep(0.05)
    token.cancel()
    result = await asyncio.wait_for(task, timeout=60)
    engine.shutdown()
    return result, listener


def test_a_watch_with_the_trigger_exports_what_is_staged_and_stops(servers, parked):
    engine = jx.ExportEngine()
    database = jx.parse_export_request(servers.request_json).database
    assert "pg_notify" in jx.notify_trigger_sql()
    asyncio.run(engine.install_notify_trigger(database))
    assert asyncio.run(engine.notify_trigger_installed(database))
    engine.shutdown()

    result, listener = asyncio.run(watch_one(servers, parked[0], jx.default_watch_options()))
    assert result.mode == jx.WatchMode.NOTIFICATIONS
    assert result.exports == 1 and result.systems[0].succeeded == 1
    assert result.wake_ups.notification >= 1
    assert [i.pending_export_id for i in listener.items()] == [str(parked[0])]
    assert any("woken by PostgreSQL notifications" in r.message for r in listener.logs)
    assert (EXECUTING, 0) not in pending_export_counts(servers.info)


def test_a_polling_watch_exports_what_is_staged_and_stops(servers, parked):
    options = jx.WatchOptions(wake_up=jx.WakeUpMode.POLL)
    result, listener = asyncio.run(watch_one(servers, parked[1], options))
    assert result.mode == jx.WatchMode.POLLING
    assert result.exports == 1
    assert result.wake_ups.poll >= 1 and result.wake_ups.notification == 0
    assert (EXECUTING, 0) not in pending_export_counts(servers.info)
    engine = jx.ExportEngine()
    database = jx.parse_export_request(servers.request_json).database
    asyncio.run(engine.remove_notify_trigger(database))
    assert not asyncio.run(engine.notify_trigger_installed(database))
    engine.shutdown()
