"""Helpers for the binding tests: a listener that records what a run reports, and readers of the
real directory (ldap3) and of JIM's database (psycopg)."""

from __future__ import annotations

import socket
import threading
from urllib.parse import urlparse

import ldap3
import psycopg

import jim_export as jx

CONTAINERS = ("People", "Groups", "Alumni")


class Collector(jx.RunListener):
    """A `RunListener` keeping every progress event, batch report and log record. The engine calls
    it from its worker threads, hence the lock."""

    def __init__(self, fail: bool = False):
        self.fail = fail
        self.lock = threading.Lock()
        self.progress: list[jx.ProgressEvent] = []
        self.batches: list[jx.BatchReport] = []
        self.logs: list[jx.LogRecord] = []
        self.threads: set[int] = set()

    def _seen(self):
        self.threads.add(threading.get_ident())
        if self.fail:
            raise RuntimeError("a listener that always fails")

    def on_progress(self, event):
        with self.lock:
            self.progress.append(event)
            self._seen()

    def on_batch(self, report):
        with self.lock:
            self.batches.append(report)
            self._seen()

    def on_log(self, record):
        with self.lock:
            self.logs.append(record)
            self._seen()

    def items(self) -> list[jx.ReportItem]:
        with self.lock:
            return [i for b in self.batches for i in b.items]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def directory_state(info: dict) -> dict[str, dict[str, set[str]]]:
    """Every entry under the seeded containers, as DN -> attribute -> values, with attribute names
    spelled as the seed spells them."""
    url = urlparse(info["ldap_url"])
    server = ldap3.Server(url.hostname, port=url.port, get_info=ldap3.NONE)
    conn = ldap3.Connection(
        server, user=info["bind_dn"], password=info["bind_password"], auto_bind=True
    )
    spelling = {
        name.lower(): name
        for entry in (info["expected_directory"] or {}).values()
        for name in entry
    }
    state: dict[str, dict[str, set[str]]] = {}
    try:
        for ou in CONTAINERS:
            base = f"ou={ou},{info['suffix']}"
            if not conn.search(
                base, "(objectClass=*)", search_scope=ldap3.LEVEL, attributes=["*"]
            ):
                continue  # the container is missing or empty
            for entry in conn.response:
                if entry.get("type") != "searchResEntry":
                    continue
                attrs = {}
                for name, values in entry["raw_attributes"].items():
                    attrs[spelling.get(name.lower(), name)] = {v.decode("utf-8") for v in values}
                state[entry["dn"]] = attrs
    finally:
        conn.unbind()
    return state


def assert_directory_matches(actual: dict, expected: dict) -> None:
    missing = sorted(set(expected) - set(actual))[:5]
    extra = sorted(set(actual) - set(expected))[:5]
    assert not missing and not extra, f"entries differ: missing {missing}, unexpected {extra}"
    for dn, want in expected.items():
        for attr, values in want.items():
            assert actual[dn].get(attr, set()) == set(values), f"{dn}: attribute {attr}"


def connect_db(info: dict):
    return psycopg.connect(info["database_url"], autocommit=True)


def pending_export_counts(info: dict) -> dict[tuple[int, int], int]:
    """(Status, ChangeType) -> rows of the system's pending exports, read straight from JIM's table."""
    with connect_db(info) as conn:
        rows = conn.execute(
            'SELECT "Status", "ChangeType", count(*) FROM "PendingExports" '
            'WHERE "ConnectedSystemId" = %s GROUP BY 1, 2',
            (info["connected_system_id"],),
        ).fetchall()
    return {(s, c): n for s, c, n in rows}


def scalar(info: dict, sql: str, *params):
    with connect_db(info) as conn:
        return conn.execute(sql, params).fetchone()[0]


# How many pending exports the tests that interrupt runs hold (the `held` fixture in conftest.py).
HELD = 10


class HeldRows:
    """Row locks on some of the system's pending exports, held in an open transaction: the engine
    claims with `FOR UPDATE SKIP LOCKED`, so no run can take these rows while they are held. Tests
    that interrupt runs hold some, so that however slowly the interruption lands, the runs cannot
    drain the queue by chance."""

    def __init__(self, info: dict, count: int):
        self.conn = connect_db(info)
        self.conn.autocommit = False
        self.ids = [
            row[0]
            for row in self.conn.execute(
                'SELECT "Id" FROM "PendingExports" WHERE "ConnectedSystemId" = %s AND "Status" = 0 '
                'ORDER BY "CreatedAt" DESC, "Id" DESC LIMIT %s FOR UPDATE',
                (info["connected_system_id"], count),
            ).fetchall()
        ]
        assert len(self.ids) == count, f"only {len(self.ids)} pending rows to hold"

    def release(self) -> None:
        self.conn.rollback()
        self.conn.close()
