"""Fixtures for the binding tests: throwaway PostgreSQL and slapd servers started by
`jim-testkit serve` (the testkit's binary), one seeded connected system per server set.

`JIM_TESTKIT` names the binary; by default it is `target/debug/jim-testkit` in the repository
(`scripts/test-python.sh` builds it).
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import HELD, HeldRows

REPO = Path(__file__).resolve().parents[3]


def testkit_binary() -> Path:
    path = Path(os.environ.get("JIM_TESTKIT", REPO / "target" / "debug" / "jim-testkit"))
    if not path.is_file():
        raise RuntimeError(
            f"{path} does not exist: build it with `cargo build -p jim-export-testkit --bin jim-testkit` "
            "or run scripts/test-python.sh"
        )
    return path


@dataclass
class Servers:
    """A running `jim-testkit serve` and the JSON it printed."""

    process: subprocess.Popen
    info: dict

    @property
    def request_json(self) -> str:
        return json.dumps(self.info["request"])

    @property
    def connected_system_id(self) -> int:
        return self.info["connected_system_id"]

    @property
    def pending_exports(self) -> int:
        return self.info["counts"]["pending_exports"]

    def stop(self) -> None:
        if self.process.poll() is None:
            # Closing stdin asks the testkit to stop its servers and remove their folders.
            self.process.stdin.close()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_servers(template: str = "Small") -> Servers:
    process = subprocess.Popen(
        [str(testkit_binary()), "serve", "--template", template],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline()
    if not line:
        process.wait(timeout=60)
        raise RuntimeError(f"jim-testkit exited with {process.returncode} before it was ready")
    return Servers(process=process, info=json.loads(line))


@pytest.fixture(scope="module")
def servers():
    """Servers shared by the tests of one module (which run in file order)."""
    s = start_servers("Small")
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def fresh_servers():
    """Servers for one test."""
    s = start_servers("Small")
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def held(servers):
    """Locks the last `HELD` pending exports of the module's servers for all its tests, released at
    the module's end. Modules whose tests interrupt runs opt in with
    `pytestmark = pytest.mark.usefixtures("held")`, so that no run can drain their queue however
    late the interruption lands."""
    rows = HeldRows(servers.info, HELD)
    try:
        yield rows
    finally:
        rows.release()
