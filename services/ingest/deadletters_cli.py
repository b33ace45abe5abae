"""``facility-ingest deadletters list|redrive``: what the dead-letter store holds, and sending it
through ingest again once the cause is fixed (see ``redrive``)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter

from common.runtime import StartupError
from services.ingest.deadletter_store import DeadLetterStore, StoreBusy, StoredLetter
from services.ingest.redrive import judge_for, redrive
from services.ingest.settings import IngestSettings
from services.ingest.sinks import build_sink

log = logging.getLogger(__name__)

EXIT_DATABASE = 1
"""``redrive``: the database did not take what passed (kept for the next re-drive)."""
EXIT_BUSY = 3
"""``redrive``: another re-drive is running on this store."""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "deadletters",
        help="list or re-drive the messages ingest rejected (INGEST_DEADLETTER_DIR)",
        description="The dead-letter store keeps every message ingest rejected, whole. `list` "
        "shows them; `redrive` judges each again with today's settings, registry and clock, "
        "stores what passes exactly as ingest does, and keeps what still fails with its new "
        "reason. Safe while ingest runs.",
    )
    actions = parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="show the stored dead letters, oldest first")
    listing.add_argument("--code", help="only letters with this reason code")
    listing.add_argument("--json", action="store_true", help="one JSON object per letter")
    again = actions.add_parser("redrive", help="judge and store the dead letters again")
    again.add_argument("--code", help="only letters with this reason code")
    again.add_argument(
        "--dry-run", action="store_true", help="say what would happen, change nothing"
    )
    again.add_argument("--json", action="store_true", help="the summary as JSON")


def run(args: argparse.Namespace, settings: IngestSettings) -> int:
    store = DeadLetterStore(
        settings.deadletter_dir,
        settings.ingest_deadletter_max_bytes,
        settings.ingest_deadletter_segment_bytes,
        create=args.action != "list",
    )
    if args.action == "list":
        return _list(store, args.code, args.json)
    return _redrive(store, settings, args.code, args.dry_run, args.json)


def _list(store: DeadLetterStore, code: str | None, as_json: bool) -> int:
    letters, unreadable = store.letters()
    shown = [letter for letter in letters if code is None or letter.code == code]
    out = sys.stdout
    if as_json:
        for letter in shown:
            out.write(letter.model_dump_json() + "\n")
        return 0
    for letter in shown:
        out.write(_row(letter) + "\n")
    codes = Counter(letter.code for letter in shown)
    by_code = ", ".join(f"{c} {n}" for c, n in sorted(codes.items()))
    out.write(f"{len(shown)} dead letters ({by_code or 'none'}) in {store.directory}")
    out.write(f"; {unreadable} unreadable lines\n" if unreadable else "\n")
    return 0


def _row(letter: StoredLetter) -> str:
    again = f" (re-driven {letter.redrives}x)" if letter.redrives else ""
    return (
        f"{letter.received_at}  {letter.code:<20} {letter.origin:<12} {letter.topic or '-'}  "
        f"{letter.reason[:160]}{again}"
    )


def _redrive(
    store: DeadLetterStore,
    settings: IngestSettings,
    code: str | None,
    dry_run: bool,
    as_json: bool,
) -> int:
    try:
        judge = judge_for(settings)
    except StartupError as exc:
        print(f"facility-ingest deadletters: {exc}", file=sys.stderr)
        return 2
    sink = None if dry_run else build_sink(settings)
    try:
        report = redrive(settings, store, judge, sink, code=code, dry_run=dry_run)
    except StoreBusy as exc:
        print(f"facility-ingest deadletters: {exc}", file=sys.stderr)
        return EXIT_BUSY
    finally:
        if sink is not None:
            sink.close()
    if as_json:
        print(json.dumps({"dry_run": dry_run, **report.as_dict()}))
    else:
        for letter in report.failures:
            print("still failing: " + _row(letter))
        verb = "would store" if dry_run else "stored"
        failing = ", ".join(f"{c} {n}" for c, n in sorted(report.still_failing.items()))
        print(
            f"{verb} {report.stored}; still failing {sum(report.still_failing.values())}"
            f"{f' ({failing})' if failing else ''}; other codes kept {report.not_selected}"
            + (f"; not written {report.not_written}" if report.not_written else "")
        )
    if report.database_error is not None:
        print(
            f"facility-ingest deadletters: the database did not take them: "
            f"{report.database_error}; they are kept, re-drive again later",
            file=sys.stderr,
        )
        return EXIT_DATABASE
    return 0
