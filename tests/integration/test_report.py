"""facility-report against a real InfluxDB 1.x holding a simulated month (June 2026): the
figures it prints are the ones worked out from the points, in the HTML and on the PDF's pages
(text extracted with pdftotext, pages rendered to PNG with pdftoppm), and --send delivers the
PDF through apprise and a signed webhook."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from common import webhook_signing
from common.devices import load_registry
from common.lineproto import encode_lines
from tests.integration.alerts.support import WebhookReceiver
from tests.integration.report_sample_data import (
    PEAK,
    Truth,
    in_days,
    month,
    week,
)
from tests.servers import InfluxDB1Server

ROOT = Path(__file__).resolve().parents[2]
DB = "report_month"
LAST_WEEK = week(date(2026, 6, 28))  # Monday 22 to Sunday 28 June
SECRET = "report-secret"


@pytest.fixture(scope="module")
def loaded(influxdb1_session: InfluxDB1Server) -> Iterator[tuple[InfluxDB1Server, Truth]]:
    registry = load_registry(ROOT / "config" / "devices.yaml")
    points, truth = month(registry)
    influxdb1_session.create_database(DB)
    for start in range(0, len(points), 5000):
        influxdb1_session.write(encode_lines(points[start : start + 5000]), DB)
    yield influxdb1_session, truth
    influxdb1_session.query_raw(f'DROP DATABASE "{DB}"')


def report(
    server: InfluxDB1Server, out: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    scrub = ("INFLUX_", "REPORT_", "ALERTS_", "DEVICES_FILE", "LOG_")
    environ = {k: v for k, v in os.environ.items() if not k.startswith(scrub)}
    environ |= {
        "INFLUX_URL": server.url,
        "INFLUX_API_VERSION": "1",
        "INFLUX_BUCKET": DB,
        "DEVICES_FILE": str(ROOT / "config" / "devices.yaml"),
        "REPORT_OUT_DIR": str(out),
        "PYTHONPATH": str(ROOT),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "services.report", *args],
        cwd=out.parent,  # no stray .env
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def expected_lines(truth: Truth, first: date, last: date) -> list[str]:
    """The report's sentences for the period, from the month's own arithmetic."""
    days = [d for d in truth.pv_wh if first <= d <= last]
    pv = sum(truth.pv_wh[d] for d in days) / 1000
    load = sum(truth.load_wh[d] for d in days) / 1000
    imported = sum(truth.import_wh[d] for d in days) / 1000
    entries = sum(n for d, n in truth.entries.items() if first <= d <= last)
    fired = [f for f in truth.fired if in_days(f[0], first, last)]
    trips = [t for t in truth.trips if in_days(t[0], first, last)]
    return [
        f"Net balance: {pv - load:+,.1f} kWh",
        f"PV produced {pv:,.1f} kWh, used {load:,.1f} kWh",
        f"Self-sufficiency: {100 * (1 - imported / load):.0f} %",
        f"Visitors: {entries:,} in {(last - first).days + 1} days",
        f"Alerts fired: {len(fired)}",
        f"bin_full (warning): {sum(1 for f in fired if f[1] == 'bin_full')}",
        f"Collection trips: {len(trips)} ({sum(t[2] for t in trips):,.0f} kg brought in)",
    ]


def kg_figures(text: str) -> dict[str, float]:
    """'apartment: 12,345 kg' -> {'apartment': 12345.0}, and the year's tonnes."""
    found = {
        kind: float(kg.replace(",", ""))
        for kind, kg in re.findall(r"(apartment|row house|detached): ([\d,]+) kg", text)
    }
    year = re.search(r"This year \(2026\): ([\d,.]+) t of 541 t \((\d+) %\)", text)
    assert year, text
    found["year_t"] = float(year.group(1))
    return found


def assert_ewaste(text: str, truth: Truth, first: date, last: date) -> None:
    got = kg_figures(text)
    for kind in ("apartment", "row_house", "detached"):
        want = sum(kg for ts, k, kg in truth.collections if k == kind and in_days(ts, first, last))
        assert got[kind.replace("_", " ")] == pytest.approx(want, abs=1.0), kind
    ytd = sum(kg for ts, _, kg in truth.collections if in_days(ts, date(2026, 1, 1), last))
    assert got["year_t"] == pytest.approx(ytd / 1000, abs=0.05)


def test_weekly_report_shows_the_weeks_figures_in_html_and_on_the_pdf_pages(
    loaded: tuple[InfluxDB1Server, Truth], tmp_path: Path
) -> None:
    server, truth = loaded
    out = tmp_path / "reports"
    first, last = LAST_WEEK
    done = report(server, out, "--from", first.isoformat(), "--to", last.isoformat())
    assert done.returncode == 0, done.stderr
    pdf = out / "facility-report-2026-06-22-2026-06-28.pdf"
    html = (out / "facility-report-2026-06-22-2026-06-28.html").read_text()
    assert done.stdout.split() == [str(out / pdf.with_suffix(".html").name), str(pdf)]

    # Self-contained: the charts are inline SVG, nothing is fetched.
    assert html.count("<svg") == 4
    assert not re.findall(r'(?:src|href)="(?!#)', html)  # only links inside the page
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    for line in expected_lines(truth, first, last):
        assert line in text, line
        assert line in html, line
    peak = f"Peak occupancy: {sum(PEAK)} people on Sat 27 Jun 14:00 ({sum(PEAK) / 3:.0f} % of 300)"
    assert peak in text
    assert_ewaste(text, truth, first, last)
    assert_ewaste(html, truth, first, last)
    # The chart pages are there, titled, and draw as images a person can read.
    for title in ("energy per day", "visitors per day", "by housing type", "Recycled this year"):
        assert title in text, title
    pages = tmp_path / "pages"
    pages.mkdir()
    subprocess.run(["pdftoppm", "-png", "-r", "60", str(pdf), str(pages / "page")], check=True)
    pngs = sorted(pages.glob("page-*.png"))
    assert len(pngs) == 3
    assert all(
        p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000 for p in pngs
    )
    keep = os.environ.get("REPORT_PAGES_DIR")  # to look at the pages by eye
    if keep:
        for png in pngs:
            shutil.copy(png, Path(keep) / png.name)


def test_month_report_adds_up_the_whole_month(
    loaded: tuple[InfluxDB1Server, Truth], tmp_path: Path
) -> None:
    server, truth = loaded
    out = tmp_path / "reports"
    done = report(server, out, "--from", "2026-06-01", "--to", "2026-06-28", "--format", "html")
    assert done.returncode == 0, done.stderr
    html = (out / "facility-report-2026-06-01-2026-06-28.html").read_text()
    assert not list(out.glob("*.pdf"))
    for line in expected_lines(truth, date(2026, 6, 1), date(2026, 6, 28)):
        assert line in html, line
    assert_ewaste(html, truth, date(2026, 6, 1), date(2026, 6, 28))


def test_report_is_sent_with_the_pdf_through_apprise_and_a_signed_webhook(
    loaded: tuple[InfluxDB1Server, Truth], tmp_path: Path
) -> None:
    server, truth = loaded
    first, last = LAST_WEEK
    with WebhookReceiver() as apprise_sink, WebhookReceiver() as webhook:
        # apprise's json:// posts the message and its attachments (base64) as JSON.
        apprise_url = apprise_sink.url.replace("http://", "json://")
        done = report(
            server,
            tmp_path / "reports",
            "--from",
            first.isoformat(),
            "--to",
            last.isoformat(),
            "--send",
            ALERTS_APPRISE_URLS=apprise_url,  # the alerts' channels unless REPORT_* says
            REPORT_WEBHOOK_URL=webhook.url,
            REPORT_WEBHOOK_SECRET=SECRET,
        )
        assert done.returncode == 0, done.stderr
        pdf = (tmp_path / "reports" / "facility-report-2026-06-22-2026-06-28.pdf").read_bytes()

        [(_, raw)] = apprise_sink.requests
        message = json.loads(raw)
        assert message["title"] == "Facility report 2026-06-22 to 2026-06-28"
        for line in expected_lines(truth, first, last):
            assert line in message["message"], line
        [attached] = message["attachments"]
        assert base64.b64decode(attached["base64"]) == pdf

        [(headers, body)] = webhook.requests
        lower = {k.lower(): v for k, v in headers.items()}
        accepted = webhook_signing.verify(
            SECRET.encode(), lower, body, now=int(lower["webhook-timestamp"])
        )
        assert accepted == lower["idempotency-key"]
        delivered = json.loads(body)
        assert delivered["type"] == "facility_report"
        assert base64.b64decode(delivered["attachment"]["data_base64"]) == pdf
        lines = [line for s in delivered["sections"] for line in s["lines"]]
        assert (
            f"Alerts fired: {len([f for f in truth.fired if in_days(f[0], first, last)])}" in lines
        )


def test_send_without_any_destination_is_a_settings_error(
    loaded: tuple[InfluxDB1Server, Truth], tmp_path: Path
) -> None:
    server, _ = loaded
    done = report(server, tmp_path / "reports", "--send")
    assert done.returncode == 2
    assert "REPORT_WEBHOOK_URL" in done.stderr
    assert not (tmp_path / "reports").exists()


def test_unreachable_influxdb_fails_with_a_message_and_writes_nothing(tmp_path: Path) -> None:
    class Nowhere:
        url = "http://127.0.0.1:9"

    done = report(Nowhere(), tmp_path / "reports")  # type: ignore[arg-type]
    assert done.returncode == 1
    assert "unreachable" in done.stderr
    assert not (tmp_path / "reports").exists()


def test_a_period_without_data_reports_zeros(
    loaded: tuple[InfluxDB1Server, Truth], tmp_path: Path
) -> None:
    server, _ = loaded
    out = tmp_path / "reports"
    done = report(server, out, "--from", "2025-01-06", "--to", "2025-01-12")
    assert done.returncode == 0, done.stderr
    html = (out / "facility-report-2025-01-06-2025-01-12.html").read_text()
    for line in (
        "Net balance: +0.0 kWh",
        "Self-sufficiency: no load measured",
        "Visitors: 0 in 7 days",
        "E-waste collected: 0 kg",
        "This year (2025): 0.0 t of 541 t (0 %)",
        "Alerts fired: 0",
        "Collection trips: 0",
    ):
        assert line in html, line
    assert (out / "facility-report-2025-01-06-2025-01-12.pdf").stat().st_size > 10_000
