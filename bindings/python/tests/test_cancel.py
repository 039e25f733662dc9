"""Cancelling runs from Python: through a `CancelToken`, by cancelling the asyncio task that awaits
the run, and by shutting the engine down. Each way must stop the run, persist what was done and
return the unexecuted claims (no row left `Executing`).

The runs are throttled (`ops_per_second`, two operations in flight) so they are still going when
cancelled; the tests share one server set and each cancels a run on what the previous ones left
pending. Ten rows stay locked by the test for the whole module, so no run can drain the queue,
however late its cancellation lands on a slow machine.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import jim_export as jx
from support import HELD, pending_export_counts

PENDING, EXECUTING, EXPORTED = 0, 2, 4
CREATE = 0

# Rows of the queue stay locked for the whole module (conftest.py).
pytestmark = pytest.mark.usefixtures("held")


@pytest.fixture
def throttled(servers) -> jx.ExportRequest:
    request = jx.parse_export_request(servers.request_json)
    # Few operations dispatched at a time, slowly, so most claims are still unexecuted when the
    # run is cancelled (operations already handed to the directory finish).
    request.options.ops_per_second = 20
    request.options.connections = 1
    request.options.in_flight_per_connection = 2
    request.options.max_in_flight = 2
    request.options.page_size = 20
    request.options.flush_size = 5
    request.options.flush_interval_ms = 100
    return request


class OnFirstBatch(jx.RunListener):
    """Calls `action` once, when the first batch report arrives."""

    def __init__(self, action):
        self.action = action
        self.done = threading.Event()

    def on_progress(self, event):
        pass

    def on_batch(self, report):
        if not self.done.is_set():
            self.done.set()
            self.action()

    def on_log(self, record):
        pass


def wait_idle(engine: jx.ExportEngine) -> None:
    """Waits (bounded) until the engine's cancelled runs have wound down."""
    deadline = time.monotonic() + 120
    while engine.active_runs() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert engine.active_runs() == 0


def exported_and_pending(servers) -> tuple[int, int]:
    counts = pending_export_counts(servers.info)
    assert (EXECUTING, CREATE) not in counts, f"claims were not returned: {counts}"
    exported, pending = counts.get((EXPORTED, CREATE), 0), counts.get((PENDING, CREATE), 0)
    assert exported + pending == servers.pending_exports, counts
    assert pending >= HELD, f"the held rows stay pending: {counts}"
    return exported, pending


def test_a_cancel_token_stops_the_run_and_returns_its_claims(servers, throttled):
    engine = jx.ExportEngine()
    token = jx.CancelToken()
    result = asyncio.run(engine.run_export(throttled, OnFirstBatch(token.cancel), token))
    assert token.is_cancelled() and result.cancelled
    assert 0 < result.success_count < servers.pending_exports, result.message
    exported, pending = exported_and_pending(servers)
    assert exported == result.success_count and pending > 0
    engine.shutdown()


def test_cancelling_the_asyncio_task_stops_the_run(servers, throttled):
    engine = jx.ExportEngine()
    before, _ = exported_and_pending(servers)

    async def main():
        loop = asyncio.get_running_loop()
        first_batch = asyncio.Event()
        listener = OnFirstBatch(lambda: loop.call_soon_threadsafe(first_batch.set))
        task = asyncio.create_task(engine.run_export(throttled, listener))
        await asyncio.wait_for(first_batch.wait(), timeout=120)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    # The host stopped waiting at once; the run winds down on the engine's runtime.
    wait_idle(engine)
    exported, pending = exported_and_pending(servers)
    assert exported > before and pending > 0
    engine.shutdown()


def test_shutdown_cancels_running_exports_and_waits_for_them(servers, throttled):
    engine = jx.ExportEngine()
    before, _ = exported_and_pending(servers)
    started = threading.Event()
    outcome = {}

    def run():
        try:
            outcome["result"] = asyncio.run(engine.run_export(throttled, OnFirstBatch(started.set)))
        except Exception as e:  # reported below
            outcome["error"] = e

    worker = threading.Thread(target=run)
    worker.start()
    assert started.wait(timeout=120)
    engine.shutdown()
    worker.join(timeout=120)
    assert not engine.is_running()
    assert "error" not in outcome, outcome
    assert outcome["result"].cancelled
    exported, pending = exported_and_pending(servers)
    assert exported > before and pending > 0
    with pytest.raises(jx.ExportError.Shutdown):
        asyncio.run(engine.run_export(throttled))
