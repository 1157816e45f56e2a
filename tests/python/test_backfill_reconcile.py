"""`clicklake backfill` and `clicklake reconcile` on the whole real click log
(100,000 rows): a backfill, killed part-way and run again, gives the tables
the live path wrote; reconcile finds nothing, then exactly one window after
a rollup row is deleted by hand, and `--repair` restores it. Expected values
were counted from the CSV here with Python's csv module."""

import signal
import subprocess
import time
from collections import Counter

import pytest
from datasketches import hll_sketch
from deltalake import DeltaTable

from conftest import Server, clicklake_bin, csv_rows, storage_options

LEVELS = ["ad_clicks_minute", "ad_clicks_hour", "ad_clicks_day", "ad_clicks_month"]


def _table(store, name):
    return DeltaTable(f"{store}/{name}", storage_options=storage_options())


def _rows(store, name):
    t = _table(store, name).to_pyarrow_table()
    return sorted(t.to_pylist(), key=lambda r: (r["window_start"], r["ad_id"]))


def _snapshot(store):
    return {name: _rows(store, name) for name in LEVELS}


def _sketch(b):
    # The HLL sketch of a small set lists its coupons in the order the users
    # came; two sketches of one set may order them differently: compare what
    # they hold.
    return hll_sketch.deserialize(b).get_estimate()


def _same(got, want, revised=None):
    """Whole tables equal; on a difference, name the first differing row and
    columns. `revised` (table, ad) names a row a repair rewrote: its revision
    count and time are new."""
    for name in LEVELS:
        assert len(got[name]) == len(want[name]), name
        for g, w in zip(got[name], want[name]):
            skip = {"users_sketch"}
            if revised == (name, w["ad_id"], w["window_start"]):
                skip |= {"revision", "revised_at"}
            differ = sorted(k for k in w if k not in skip and g.get(k) != w[k])
            if _sketch(g["users_sketch"]) != _sketch(w["users_sketch"]):
                differ.append("users_sketch")
            assert not differ, f"{name}: {differ} differ in {w} (now {g})"


def _cli(*args, check=True):
    out = subprocess.run([clicklake_bin(), *args], capture_output=True, text=True, timeout=600)
    if check:
        assert out.returncode == 0, out.stdout + out.stderr
    return out


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """The whole log, loaded and rolled up by a server that is then stopped,
    so the jobs below are the only writers."""
    s = Server(tmp_path_factory.mktemp("full") / "lake")
    try:
        summary = s.load(100_000)
        assert "100000 stored" in summary, summary
        s.wait_rolled_up()
    finally:
        s.stop()
    return s.store


def test_the_live_rollups_match_the_csv(lake):
    per_day = Counter(row[5][:10] for row in csv_rows())
    got = Counter()
    for r in _rows(lake, "ad_clicks_day"):
        got[r["window_start"].strftime("%Y-%m-%d")] += r["clicks"]
    assert got == per_day


def test_backfill_killed_part_way_then_rerun_gives_the_live_tables(lake):
    live = _snapshot(lake)
    before = _table(lake, "ad_clicks_minute").version()
    job = subprocess.Popen([clicklake_bin(), "backfill", "--store", lake, "--from", "2017-11-06", "--to", "2017-11-10"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Kill it once its first level is committed, before the others.
    deadline = time.time() + 300
    while _table(lake, "ad_clicks_minute").version() == before:
        assert job.poll() is None, job.communicate()
        assert time.time() < deadline, "backfill committed nothing"
        time.sleep(0.05)
    job.send_signal(signal.SIGKILL)
    job.wait()
    out = _cli("backfill", "--store", lake, "--from", "2017-11-06", "--to", "2017-11-10")
    assert "minute" in out.stdout and "month" in out.stdout, out.stdout
    _same(_snapshot(lake), live)


def test_reconcile_finds_exactly_a_deleted_window_and_repair_restores_it(lake):
    live = _snapshot(lake)
    out = _cli("reconcile", "--store", lake, "--from", "2017-11-01", "--to", "2017-12-01")
    assert ": 0 difference(s)" in out.stdout, out.stdout

    # 3-280 (app 3, channel 280) in the hour 2017-11-07T00, from the CSV.
    clicks, users, conversions = 0, set(), 0
    for ip, app, _device, _os, channel, click_time, _attributed_time, is_attributed in csv_rows():
        if (app, channel) == ("3", "280") and click_time.startswith("2017-11-07 00"):
            clicks += 1
            users.add(ip)
            conversions += is_attributed == "1"
    assert clicks > 0
    hour = next(r["window_start"] for r in live["ad_clicks_hour"]
                if r["ad_id"] == "3-280" and r["window_start"].strftime("%Y-%m-%dT%H") == "2017-11-07T00")
    _table(lake, "ad_clicks_hour").delete(
        "ad_id = '3-280' AND window_start = arrow_cast('2017-11-07T00:00:00Z', 'Timestamp(Microsecond, Some(\"UTC\"))')")

    out = _cli("reconcile", "--store", lake, "--from", "2017-11-01", "--to", "2017-12-01", check=False)
    assert out.returncode != 0, out.stdout
    assert ": 1 difference(s)" in out.stdout, out.stdout
    [line] = [l for l in out.stdout.splitlines() if l.startswith("hour ")]
    assert line.split() == ["hour", "2017-11-07T00:00:00Z", "3-280", str(clicks), "-", str(len(users)), "-",
                            str(conversions), "-", "differ"], line
    assert "--repair" in out.stderr, out.stderr

    out = _cli("reconcile", "--store", lake, "--from", "2017-11-01", "--to", "2017-12-01", "--repair")
    assert "repaired: a new recount matches every level" in out.stdout, out.stdout
    out = _cli("reconcile", "--store", lake, "--from", "2017-11-01", "--to", "2017-12-01")
    assert ": 0 difference(s)" in out.stdout, out.stdout
    _same(_snapshot(lake), live, revised=("ad_clicks_hour", "3-280", hour))
