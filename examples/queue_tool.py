#!/usr/bin/env python3
"""A small operator tool on the `jim_export` Python package (bindings/python).

    queue_tool.py queue  REQUEST.json [--lease-seconds N]
        shows a connected system's pending-export queue by status and change type
    queue_tool.py export REQUEST.json [--dry-run]
        runs an export with a progress bar and prints JIM's outcome message

REQUEST.json is an export request in the JSON form the C ABI takes (`-` reads stdin); for the
`queue` command only its database and connected system are used. `jim-testkit serve` prints one
under "request", e.g.

    target/debug/jim-testkit serve --template Small --json-out target/servers.json &
    python3 -c 'import json; print(json.dumps(json.load(open("target/servers.json"))["request"]))' > target/request.json
    python3 examples/queue_tool.py queue target/request.json
    python3 examples/queue_tool.py export target/request.json

Install the package first (`bash scripts/test-python.sh` builds the wheel into target/python/wheels).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import threading

import jim_export as jx


def load_request(path: str) -> jx.ExportRequest:
    text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    return jx.parse_export_request(text)


def title(value) -> str:
    """`PendingExportStatus.EXPORT_NOT_CONFIRMED` -> `Export Not Confirmed`."""
    return value.name.replace("_", " ").title()


def show_queue(engine: jx.ExportEngine, request: jx.ExportRequest, lease_seconds: int) -> None:
    summary = asyncio.run(
        engine.queue_summary(request.database, request.connected_system_id, lease_seconds)
    )
    print(f"Connected system {request.connected_system_id}: {summary.total} pending exports")
    print(f"  {'status':<20} {'change':<8} {'rows':>8}")
    for row in summary.by_status:
        status = title(row.known_status) if row.known_status else f"? ({row.status})"
        change = title(row.known_change_type) if row.known_change_type else f"? ({row.change_type})"
        print(f"  {status:<20} {change:<8} {row.count:>8}")
    print(
        f"  executable now: {summary.executable}, backing off: {summary.not_yet_due}, "
        f"stranded in Executing: {summary.stranded_executing}, "
        f"carrying references: {summary.with_unresolved_references}"
    )
    if summary.oldest_failure:
        print(f"  oldest failure: {summary.oldest_failure:%Y-%m-%d %H:%M:%S}")


class ProgressBar(jx.RunListener):
    """A run listener drawing one progress line on stderr. The engine calls it from its own threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.width = max(10, min(40, shutil.get_terminal_size().columns - 60))
        self.failures = []

    def on_progress(self, event):
        total = max(event.total, event.processed, 1)
        done = int(self.width * event.processed / total)
        bar = "#" * done + "." * (self.width - done)
        phase = title(event.phase)
        line = (
            f"\r[{bar}] {event.processed}/{event.total} {phase:<20} "
            f"{event.rate:7.1f} obj/s  failed {event.failed}"
        )
        with self.lock:
            sys.stderr.write(line)
            sys.stderr.flush()

    def on_batch(self, report):
        with self.lock:
            for item in report.items:
                if item.status == jx.ItemStatus.FAILED:
                    self.failures.append((item.pending_export_id, item.error_message))

    def on_log(self, record):
        if record.level in (jx.LogLevel.WARN, jx.LogLevel.ERROR):
            with self.lock:
                sys.stderr.write(f"\n{record.level.name.lower()}: {record.message}\n")


def run_export(engine: jx.ExportEngine, request: jx.ExportRequest, dry_run: bool) -> int:
    request.options.dry_run = dry_run
    bar = ProgressBar()
    cancel = jx.CancelToken()

    async def run():
        return await engine.run_export(request, bar, cancel)

    try:
        result = asyncio.run(run())
    except KeyboardInterrupt:
        # Ctrl-C: ask the run to stop, persist what it did and return its claims.
        cancel.cancel()
        engine.shutdown()
        print("\ncancelled", file=sys.stderr)
        return 130
    sys.stderr.write("\n")
    print(result.message)
    for export_id, message in bar.failures[:10]:
        print(f"  failed {export_id}: {message}")
    return 1 if result.failed_count else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    queue = sub.add_parser("queue", help="show the queue by status")
    queue.add_argument("request")
    queue.add_argument("--lease-seconds", type=int, default=900)
    export = sub.add_parser("export", help="run an export with a progress bar")
    export.add_argument("request")
    export.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)

    try:
        request = load_request(args.request)
    except jx.ExportError.InvalidRequest as e:
        for field in e.errors:
            print(f"invalid request: {field.path}: {field.reason}", file=sys.stderr)
        return 2
    engine = jx.ExportEngine()
    try:
        if args.command == "queue":
            show_queue(engine, request, args.lease_seconds)
            return 0
        return run_export(engine, request, args.dry_run)
    except jx.ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        engine.shutdown()


if __name__ == "__main__":
    sys.exit(main())
