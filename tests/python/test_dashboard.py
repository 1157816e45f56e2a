"""The analytics dashboard (`GET /`, query/assets/) in a real browser: Debian's
Chromium driven by Playwright, against the server holding the first 3,000 rows
of the real click log. Expected values were counted from the CSV here with
Python's csv module, not by clicklake. The last page is saved to
test-artifacts/dashboard.png."""

import os
import re
from collections import Counter, defaultdict
from datetime import datetime, timedelta

import pytest

from conftest import ROOT, Server, csv_rows

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "test-artifacts"
ROWS = 3000  # what the `server` fixture loads


def _clicks(n=ROWS):
    """The loader's view of the first n rows: (ad_id, user_id, device, time, conversion)."""
    for ip, app, device, _os, channel, click_time, _attributed_time, is_attributed in csv_rows(n):
        yield (f"{app}-{channel}", ip, device, datetime.strptime(click_time, "%Y-%m-%d %H:%M:%S"),
               is_attributed == "1")


def _day(s):
    return datetime.strptime(s, "%Y-%m-%d")


def _in_range(start, end):
    a, b = _day(start), _day(end)
    return [c for c in _clicks() if a <= c[3] < b]


def _top_ads(start, end, limit=10):
    """[(ad_id, clicks, conversions)] by clicks, ties by ad_id ascending."""
    clicks, conversions = Counter(), Counter()
    for ad, _user, _device, _t, conv in _in_range(start, end):
        clicks[ad] += 1
        conversions[ad] += conv
    ranked = sorted(clicks, key=lambda ad: (-clicks[ad], ad))[:limit]
    return [(ad, clicks[ad], conversions[ad]) for ad in ranked]


def _hour(t):
    """The dashboard's label of an hour window: 'YYYY-MM-DD HH:00' (UTC)."""
    return t.strftime("%Y-%m-%d %H:00")


def _per_hour(ad, start, end, device=None):
    """(clicks per hour, unique users per hour) of one ad; only hours with clicks."""
    clicks, users = Counter(), defaultdict(set)
    for a, user, dev, t, _conv in _in_range(start, end):
        if a == ad and (device is None or dev == device):
            clicks[_hour(t)] += 1
            users[_hour(t)].add(user)
    return dict(clicks), {h: len(u) for h, u in users.items()}


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: the dashboard test drives Debian's Chromium. Install it with "
                    "`make browser-env` (or `apt-get update && apt-get install -y chromium`, as root)", pytrace=False)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright package is missing: run `make python-env` (tests/python/requirements.txt)",
                    pytrace=False)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class Dashboard:
    """One page of the dashboard, with the calls the test reads it through."""

    def __init__(self, page, base):
        self.page = page
        self.base = base
        self.page_errors, self.console_errors = [], []
        page.on("pageerror", lambda e: self.page_errors.append(str(e)))
        page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))

    def settled(self):
        """Wait for the render the last action started (data-ready goes 0 -> 1)."""
        self.page.wait_for_function("document.body.dataset.ready === '1'", timeout=60_000)

    def act(self, action):
        """Run an action that re-renders, and wait for that render (not an earlier one) to finish."""
        self.page.evaluate("document.body.dataset.ready = 'stale'")
        action()
        self.settled()

    def open(self, query):
        self.page.goto(f"{self.base}/?{query}")
        self.settled()

    def table(self, table_id):
        return self.page.eval_on_selector_all(
            f"#{table_id} tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent.trim()))")

    def top_ads(self):
        return [(ad, _int(clicks), _int(conv)) for _rank, ad, clicks, conv in self.table("top-ads")]

    def chart(self, canvas_id):
        return self.page.evaluate("""id => {
            const c = Chart.getChart(id);
            return {labels: c.data.labels, provisional: c.$provisional || [],
                    datasets: c.data.datasets.map(d => ({label: d.label, data: d.data, hidden: !!d.hidden,
                                                        pointStyle: d.pointStyle}))};
        }""", canvas_id)

    def series(self, label, canvas_id="clicks-chart"):
        """label of a window -> value, of the dataset named `label`, without the empty windows."""
        chart = self.chart(canvas_id)
        (ds,) = [d for d in chart["datasets"] if d["label"] == label]
        assert len(ds["data"]) == len(chart["labels"])
        return {lab: v for lab, v in zip(chart["labels"], ds["data"]) if v}

    def errors(self):
        return self.page.inner_text("#errors") if self.page.is_visible("#errors") else ""


def _int(text):
    return int(text.replace(",", ""))


def test_dashboard_shows_the_csv_recount_and_follows_the_filters(server, browser):
    server.wait_rolled_up()  # also after the other tests' loads into this server
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    d = Dashboard(page, f"http://{server.http}")
    try:
        # 1. A link reproduces a view: the range and granularity come from the query string.
        d.open("start=2017-11-06&end=2017-11-10&granularity=hour")
        assert d.errors() == ""
        assert page.input_value("#start") == "2017-11-06" and page.input_value("#end") == "2017-11-10"
        assert page.input_value("#granularity") == "hour"
        expected_top = _top_ads("2017-11-06", "2017-11-10")
        assert d.top_ads() == expected_top
        assert [r[0] for r in d.table("top-ads")] == [str(i) for i in range(1, 11)]

        # 2. Clicking the top ad selects it: hourly clicks and unique users equal the recount,
        # the choice is written to the URL, and the device breakdown adds up to the clicks.
        top_ad = expected_top[0][0]
        d.act(lambda: page.click(f"#top-ads tbody tr[data-ad='{top_ad}'] a"))
        assert f"ad={top_ad}" in page.url
        assert page.input_value("#ad") == top_ad
        clicks, users = _per_hour(top_ad, "2017-11-06", "2017-11-10")
        assert d.series("clicks") == clicks
        assert d.series("unique users") == users
        devices = Counter(dev for a, _u, dev, _t, _c in _in_range("2017-11-06", "2017-11-10") if a == top_ad)
        chart = d.chart("device-chart")
        bars = dict(zip(chart["labels"], chart["datasets"][0]["data"]))
        assert sum(bars.values()) == sum(devices.values())
        top_devices = sorted(devices.items(), key=lambda kv: (-kv[1], kv[0]))[:15]  # the rest is one "other" bar
        assert {k: v for k, v in bars.items() if not k.startswith("other")} == dict(top_devices)
        # Empty hours are drawn as 0: one label per hour of the range.
        assert len(d.chart("clicks-chart")["labels"]) == 4 * 24

        # Provisional windows are marked: the hours ending after the watermark (the newest
        # event time less the default allowed lateness of 1 h) are not final yet.
        newest = max(c[3] for c in _clicks())
        watermark = newest - timedelta(hours=1)
        chart = d.chart("clicks-chart")
        provisional = {lab for lab, p in zip(chart["labels"], chart["provisional"]) if p}
        expected_provisional = {h for h in clicks if _day(h[:10]) + timedelta(hours=int(h[11:13]) + 1) > watermark}
        assert provisional & set(clicks) == expected_provisional
        styles = chart["datasets"][0]["pointStyle"]
        assert {styles[chart["labels"].index(h)] for h in expected_provisional} <= {"triangle"}
        assert {styles[chart["labels"].index(h)] for h in set(clicks) - expected_provisional} == {"circle"}
        if expected_provisional:
            assert "provisional" in page.inner_text("#clicks-note")

        # 3. The user drill-down lists the clicks of the busiest user of the range.
        per_user = Counter(u for _a, u, _d, _t, _c in _in_range("2017-11-06", "2017-11-10"))
        user = min(per_user, key=lambda u: (-per_user[u], u))
        d.act(lambda: (page.fill("#user", user), page.click("#user-form button")))
        rows = d.table("user-clicks")
        assert len(rows) == per_user[user]
        expected_times = sorted(t.strftime("%Y-%m-%d %H:%M:%S") for _a, u, _d, t, _c in
                                _in_range("2017-11-06", "2017-11-10") if u == user)
        assert [r[0] for r in rows] == expected_times
        assert f"user={user}" in page.url

        # The System section scraped /metrics twice (every 5 s; rates need two scrapes): the
        # accepted events (3,000, or 6,000 after test_adbc_flightsql's second load), nothing
        # ingested since, and the rollups caught up.
        page.wait_for_function("Number(document.body.dataset.scrapes) >= 2", timeout=30_000)
        ingest = page.inner_text("#sys-ingest")
        accepted = int(server.metrics()["clicklake_ingest_events_accepted_total"])
        assert accepted in (ROWS, 2 * ROWS)
        assert f"accepted total\n{accepted:,}" in ingest, ingest
        assert "events accepted\n0.00 events/s" in ingest, ingest
        assert "0 commits behind" in page.inner_text("#sys-compactor")  # the fixture waited for the rollups
        checks = {re.search(r'check="([^"]*)"', name).group(1) for name in server.metrics()
                  if re.match(r"clicklake_(compactor_)?quality_\w+\{.*check=", name)}
        listed = page.eval_on_selector_all("#sys-quality li[data-check]", "items => items.map(i => i.dataset.check)")
        assert sorted(listed) == sorted(checks)
        if not checks:
            assert page.inner_text("#sys-quality").strip() == "none reported"

        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

        # 4. A narrower range and another ad typed into the filter bar: the table and the
        # chart follow, and the URL holds the new view.
        second_ad = expected_top[1][0]
        d.act(lambda: (page.fill("#end", "2017-11-08"), page.fill("#ad", second_ad), page.press("#ad", "Enter")))
        assert "end=2017-11-08" in page.url and f"ad={second_ad}" in page.url
        assert d.top_ads() == _top_ads("2017-11-06", "2017-11-08")
        clicks, users = _per_hour(second_ad, "2017-11-06", "2017-11-08")
        assert clicks, "the second ad has clicks before 2017-11-08"
        assert d.series("clicks") == clicks
        assert d.series("unique users") == users

        # 5. A device filter: the chart shows that device's clicks, from the breakdowns.
        devices = Counter(dev for a, _u, dev, _t, _c in _in_range("2017-11-06", "2017-11-08") if a == second_ad)
        device = min(devices, key=lambda dv: (-devices[dv], dv))
        d.act(lambda: (page.fill("#device", device), page.click("#apply")))
        assert f"device={device}" in page.url
        assert d.series(f"clicks (device {device})") == _per_hour(second_ad, "2017-11-06", "2017-11-08", device)[0]

        # 6. The browser's back button returns to the previous view.
        d.act(lambda: page.go_back())
        assert page.input_value("#device") == ""
        assert d.series("clicks") == clicks

        # 7. Going to a link reproduces the view exactly.
        d.open(f"start=2017-11-06&end=2017-11-08&granularity=hour&ad={second_ad}")
        assert d.series("clicks") == clicks
        assert d.page_errors == [] and d.console_errors == [], (d.page_errors, d.console_errors)

        # 8. A server error is shown on the page, naming the problem.
        d.open(f"start=2017-11-06&end=2017-11-08&granularity=week&ad={second_ad}")
        assert "granularity must be one of" in d.errors()
        assert "HTTP 400" in d.errors()
        assert d.page_errors == [], d.page_errors
    finally:
        page.close()


def test_dashboard_sends_the_saved_bearer_token(tmp_path_factory, browser):
    """On a server with tokens the read calls are refused until a token is saved;
    the saved token (localStorage) is sent as `Authorization: Bearer` and survives a reload."""
    token = "dashboard-token-1"
    s = Server(tmp_path_factory.mktemp("dashboard-auth") / "lake", "--auth-tokens", token)
    page = browser.new_page()
    try:
        d = Dashboard(page, f"http://{s.http}")
        d.open("start=2017-11-06&end=2017-11-10&ad=3-280")
        assert "HTTP 401" in d.errors(), d.errors()
        sent = []
        page.on("request", lambda r: r.url.split("?")[0].endswith("/v1/ads/top")
                and sent.append(r.headers.get("authorization")))
        d.act(lambda: (page.fill("#token", token), page.click("#token-form button")))
        assert d.errors() == ""
        assert sent == [f"Bearer {token}"]
        assert d.table("top-ads") == [["no clicks in this range"]]
        assert page.evaluate("localStorage.getItem('clicklake.token')") == token
        d.open("start=2017-11-06&end=2017-11-10")
        assert page.input_value("#token") == token and d.errors() == ""
        assert d.page_errors == [], d.page_errors
    finally:
        page.close()
        s.stop()
