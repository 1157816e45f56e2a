"""Data-quality checks: eight days of hourly clicks (100 an hour over five
ads), then an hour with a 90% drop; the compactor's `clicks_drop` and
`ad_clicks_drop` checks fire, with the ratio they judged. The same series
with an ordinary hour (-5%) fires nothing."""

import time
from datetime import datetime, timedelta, timezone

import pytest

from conftest import Server
from drillkit import post

START = datetime(2026, 11, 20, tzinfo=timezone.utc)
HOURS = 8 * 24  # the hour judged is START + HOURS


def series(last_hour_per_ad: int) -> list:
    events = []
    for h in range(HOURS + 1):
        per_ad = 20 if h < HOURS else last_hour_per_ad
        for ad in range(5):
            for i in range(per_ad):
                t = START + timedelta(hours=h, seconds=ad * 600 + i * 20)
                events.append({"event_id": f"q-{h}-{ad}-{i}", "ad_id": f"qa-{ad}", "user_id": f"qu-{i}",
                               "timestamp": t.strftime("%Y-%m-%dT%H:%M:%SZ")})
    # One click in the next hour moves the watermark past the hour judged.
    t = START + timedelta(hours=HOURS + 1, minutes=30)
    events.append({"event_id": "q-next", "ad_id": "qa-0", "user_id": "qu-0",
                   "timestamp": t.strftime("%Y-%m-%dT%H:%M:%SZ")})
    return events


def checks(tmp_path, last_hour_per_ad: int) -> dict:
    s = Server(tmp_path / "lake", "--allowed-lateness", "0s", "--max-request-events", "100000")
    try:
        status, body = post(s.http, series(last_hour_per_ad), timeout=120)
        assert status == 200 and body["accepted"] == (HOURS * 100 + 5 * last_hour_per_ad + 1), body
        s.wait_rolled_up()
        # The checks run right after the rollup run that took the events in.
        deadline = time.time() + 60
        while (m := s.metrics())['clicklake_compactor_quality_value{check="clicks_drop"}'] == 0:
            assert time.time() < deadline, m
            time.sleep(0.2)
        return {c: (m[f'clicklake_compactor_quality_firing{{check="{c}"}}'],
                    m[f'clicklake_compactor_quality_value{{check="{c}"}}'])
                for c in ("clicks_drop", "clicks_spike", "ad_clicks_drop", "ad_clicks_spike",
                          "late_rate", "duplicate_rate")}
    finally:
        s.stop()


def test_a_ninety_percent_drop_fires_the_drop_checks(tmp_path):
    got = checks(tmp_path, last_hour_per_ad=2)
    assert got["clicks_drop"] == (1, pytest.approx(0.1))  # 10 clicks against 100
    assert got["ad_clicks_drop"] == (1, 5)  # every ad: 2 against 20
    assert got["clicks_spike"][0] == 0 and got["ad_clicks_spike"] == (0, 0)
    assert got["duplicate_rate"] == (0, 0)


def test_an_ordinary_hour_fires_nothing(tmp_path):
    got = checks(tmp_path, last_hour_per_ad=19)
    assert got["clicks_drop"] == (0, pytest.approx(0.95))
    assert all(firing == 0 for firing, _ in got.values()), got
