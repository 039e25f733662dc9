"""A Python process that exits while a run is still going: it must exit cleanly, not abort, and leave
nothing `Executing`.

CPython ends any thread that calls into it once the interpreter is finalizing; when that thread is
one of the engine's, the process aborts (SIGABRT, "exception not rethrown"). Two ways to get there
are exercised, each in a child process that exits as soon as the run's first batch arrives:

- `asyncio.run` returns while the run's task is still pending: asyncio cancels the task, the host
  stops waiting, the run winds down without calling the listener again;
- a daemon thread awaits the run while the main thread returns: the package's exit hook shuts the
  engine down before the interpreter finalizes (the run is cancelled and returns its claims).

Each child runs the same throttled request, with a listener that does Python work on every progress
event (every 10 ms), so callbacks are coming when the process exits. Ten rows stay locked so that no
run can drain the queue, however late the exit lands.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from support import HELD, pending_export_counts

PENDING, EXECUTING, EXPORTED = 0, 2, 4

# Rows of the queue stay locked for the whole module (conftest.py).
pytestmark = pytest.mark.usefixtures("held")

CHILD = textwrap.dedent(
    """
    import asyncio, json, sys, threading
    import jim_export as jx

    class Busy(jx.RunListener):
        def __init__(self):
            self.first = threading.Event()
            self.seen = []
        def on_progress(self, event):
            self.seen.append(str(event))
        def on_batch(self, report):
            self.seen.append(len(report.items))
            self.first.set()
        def on_log(self, record):
            self.seen.append(record.message)

    request = jx.parse_export_request(sys.argv[2])
    request.options.ops_per_second = 20
    request.options.connections = 1
    request.options.in_flight_per_connection = 2
    request.options.max_in_flight = 2
    request.options.flush_size = 2
    request.options.progress_interval_ms = 10
    engine = jx.ExportEngine(worker_threads=2)
    listener = Busy()

    if sys.argv[1] == "asyncio":
        async def main():
            task = asyncio.ensure_future(engine.run_export(request, listener))
            while not listener.first.is_set():
                if task.done():
                    task.result()
                    raise SystemExit("the run ended before its first batch")
                await asyncio.sleep(0.01)
        # Returns with the run's task still pending: asyncio.run cancels it.
        asyncio.run(main())
    else:
        worker = threading.Thread(
            target=lambda: asyncio.run(engine.run_export(request, listener)), daemon=True
        )
        worker.start()
        if not listener.first.wait(120):
            raise SystemExit("no first batch")
    print("EXITING", flush=True)
    """
)


@pytest.mark.parametrize("how", ["asyncio", "daemon-thread"])
def test_exiting_mid_run_neither_aborts_nor_strands_rows(servers, tmp_path, how):
    before = pending_export_counts(servers.info)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = subprocess.run(
        [sys.executable, str(script), how.split("-")[0], json.dumps(servers.info["request"])],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert child.returncode == 0, (
        f"the child exited with {child.returncode}\n{child.stdout}\n{child.stderr}"
    )
    assert "EXITING" in child.stdout, child.stdout + child.stderr
    assert "FATAL" not in child.stderr and "panicked" not in child.stderr, child.stderr

    counts = pending_export_counts(servers.info)
    executing = sum(n for (s, _), n in counts.items() if s == EXECUTING)
    assert executing == 0, f"rows left Executing: {counts}"
    exported = sum(n for (s, _), n in counts.items() if s == EXPORTED)
    pending = sum(n for (s, _), n in counts.items() if s == PENDING)
    assert exported + pending == servers.pending_exports, counts
    assert exported > sum(n for (s, _), n in before.items() if s == EXPORTED), "the run wrote"
    assert pending >= HELD, counts
