"""``facility-report``: last week's (or any period's) figures from InfluxDB, as HTML and PDF
with charts, optionally sent through the configured notifiers.

Exit codes: 0 written (and sent), 1 InfluxDB or a destination failed, 2 bad settings or
arguments.
"""

from __future__ import annotations

import argparse
import signal
import sys
from dataclasses import asdict
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from common.devices import RegistryError, load_registry
from common.influx import InfluxClient, InfluxError
from common.runtime import load_program_settings
from services.report import figures as figures_mod
from services.report.period import Period
from services.report.render import sections, to_html, to_pdf
from services.report.send import SendError, by_apprise, by_webhook
from services.report.settings import ReportSettings

PROGRAM = "facility-report"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="The facilities' figures of last week (Monday to Sunday, Korean days) or "
        "of --from/--to, from InfluxDB, as HTML and PDF. Settings: INFLUX_*, DEVICES_FILE, "
        "REPORT_* (see docs/operations.md).",
    )
    parser.add_argument(
        "--from", dest="first", type=date.fromisoformat, help="first day, YYYY-MM-DD"
    )
    parser.add_argument("--to", dest="last", type=date.fromisoformat, help="last day (included)")
    parser.add_argument(
        "--format",
        default="html,pdf",
        help="comma-separated: html, pdf (default both)",
    )
    parser.add_argument("--out-dir", help="where to write (default REPORT_OUT_DIR, reports/)")
    parser.add_argument(
        "--send",
        action="store_true",
        help="send to REPORT_APPRISE_URLS (else ALERTS_APPRISE_URLS) and REPORT_WEBHOOK_URL",
    )
    args = parser.parse_args(argv)
    formats = {f.strip() for f in args.format.split(",") if f.strip()}
    if not formats or formats - {"html", "pdf"}:
        parser.error("--format takes html, pdf or html,pdf")
    if args.send and "pdf" not in formats:
        parser.error("--send attaches the PDF: keep pdf in --format")
    if (args.first is None) != (args.last is None):
        parser.error("--from and --to go together")
    if args.first is not None and args.last < args.first:
        parser.error("--to is before --from")
    args.formats = formats
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = load_program_settings(ReportSettings, PROGRAM)
    if args.send and not settings.apprise_urls and not settings.report_webhook_url:
        print(
            f"{PROGRAM}: --send needs REPORT_APPRISE_URLS (or ALERTS_APPRISE_URLS) or "
            "REPORT_WEBHOOK_URL",
            file=sys.stderr,
        )
        return 2
    try:
        tz = ZoneInfo(settings.report_timezone)
    except (ZoneInfoNotFoundError, ValueError):
        print(f"{PROGRAM}: invalid setting REPORT_TIMEZONE: unknown time zone", file=sys.stderr)
        return 2
    try:
        registry = load_registry(settings.devices_file)
    except RegistryError as exc:
        print(f"{PROGRAM}: invalid setting DEVICES_FILE: {exc}", file=sys.stderr)
        return 2
    now = datetime.now(tz)
    period = (
        Period.of_days(args.first, args.last, tz)
        if args.first is not None
        else Period.week_before(now.date(), tz)
    )
    client = InfluxClient.from_settings(settings, timeout_s=settings.report_timeout_s)
    try:
        figures = figures_mod.read(client.query, registry, period, tz)
    except InfluxError as exc:
        print(f"{PROGRAM}: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()

    out_dir = settings.report_out_dir if args.out_dir is None else Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"facility-report-{period.start.date().isoformat()}-{period.last_day.isoformat()}"
    written = {}
    if "html" in args.formats:
        written["html"] = out_dir / f"{stem}.html"
        written["html"].write_text(to_html(figures, now), encoding="utf-8")
    if "pdf" in args.formats:
        written["pdf"] = out_dir / f"{stem}.pdf"
        written["pdf"].write_bytes(to_pdf(figures, now))
    for path in written.values():
        print(path)

    if not args.send:
        return 0
    text = sections(figures)
    title = f"Facility report {period.label()}"
    body = "\n\n".join(s.title + "\n" + "\n".join(s.lines) for s in text)
    failures = []
    if settings.apprise_urls:
        try:
            by_apprise(settings.apprise_urls, title, body, written["pdf"])
        except SendError as exc:
            failures.append(str(exc))
    if settings.report_webhook_url:
        secret = settings.report_webhook_secret
        summary: dict[str, object] = {
            "type": "facility_report",
            "period": {"from": period.start.isoformat(), "to": period.end.isoformat()},
            "sections": [asdict(s) for s in text],
        }
        try:
            by_webhook(
                settings.report_webhook_url,
                summary,
                written["pdf"],
                secret.get_secret_value().encode() if secret else None,
            )
        except SendError as exc:
            failures.append(str(exc))
    for failure in failures:
        print(f"{PROGRAM}: {failure}", file=sys.stderr)
    return 1 if failures else 0


def run() -> int:
    """The console script: Ctrl-C or SIGTERM stop it with a line, not a traceback."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return main()
    except KeyboardInterrupt:
        print(f"{PROGRAM}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(run())
