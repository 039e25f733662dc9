"""examples/queue_tool.py against real servers: the queue by status, then an export with a
progress bar, then the queue again."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO

TOOL = REPO / "examples" / "queue_tool.py"


def tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=300
    )


def test_the_queue_tool_shows_the_queue_and_runs_an_export(servers, tmp_path):
    request = tmp_path / "request.json"
    request.write_text(servers.request_json)
    n = servers.pending_exports

    before = tool("queue", str(request))
    assert before.returncode == 0, before.stderr
    assert f"{n} pending exports" in before.stdout
    assert any(line.split() == ["Pending", "Create", str(n)] for line in before.stdout.splitlines()), before.stdout

    run = tool("export", str(request))
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"Export complete: {n} succeeded, 0 failed"), run.stdout
    assert f"{n}/{n}" in run.stderr and "Completed" in run.stderr, run.stderr

    after = tool("queue", str(request))
    assert any(line.split() == ["Exported", "Create", str(n)] for line in after.stdout.splitlines()), after.stdout

    bad = tmp_path / "bad.json"
    bad.write_text('{"connected_system_id": 0}')
    refused = tool("queue", str(bad))
    assert refused.returncode == 2 and "invalid request:" in refused.stderr and "database" in refused.stderr, refused.stderr
