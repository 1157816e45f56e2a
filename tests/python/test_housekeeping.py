"""`clicklake optimize` and `vacuum` on a live store: optimize runs again and
again while the real click log is loaded (and partly loaded again, which
stores later copies of the same event ids); afterwards every count is exact,
the later copies are gone from the raw table, and there are fewer files.
Expected values come from reading the CSV with Python's csv module."""

import collections
import csv
import datetime
import re
import subprocess
import threading

from deltalake import DeltaTable

from conftest import DATA, Server, clicklake_bin, rows, storage_options

ROWS = 20_000
AGAIN = 3_000


def csv_counts(limit):
    """clicks and distinct users per UTC day of the first `limit` rows."""
    clicks, users = collections.Counter(), collections.defaultdict(set)
    with open(DATA, newline="") as f:
        r = csv.reader(f)
        next(r)
        for i, row in enumerate(r):
            if i == limit:
                break
            day = datetime.datetime.strptime(row[5], "%Y-%m-%d %H:%M:%S").date()
            clicks[day] += 1
            users[day].add(row[0])
    return dict(clicks), {d: len(u) for d, u in users.items()}


def files(store, table):
    return len(DeltaTable(f"{store}/{table}", storage_options=storage_options()).file_uris())


def optimize(store):
    out = subprocess.run([clicklake_bin(), "optimize", "--store", store],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_optimize_during_ingest_keeps_counts_exact_and_removes_copies(tmp_path):
    import adbc_driver_flightsql.dbapi as flightsql

    s = Server(tmp_path / "lake", "--optimize-interval", "0", flush_interval="20ms")
    try:
        def load():
            s.load(ROWS)
            s.load(AGAIN)  # the same ids again: later copies

        loader = threading.Thread(target=load)
        loader.start()
        passes = []
        while loader.is_alive():
            passes.append(optimize(s.store))
        loader.join()
        passes.append(optimize(s.store))
        assert len(passes) >= 3, "optimize ran while the load was going on"
        # The passes found many small raw files and left fewer.
        shrunk = [line.split() for p in passes for line in p.splitlines() if line.split()[:1] == ["ad_clicks"]]
        assert any(int(f[2]) > int(f[4]) for f in shrunk), passes
        s.wait_rolled_up()
        with flightsql.connect(s.uri, autocommit=True) as conn:
            stored = rows(conn, "SELECT count(*), count(DISTINCT event_id) FROM ad_clicks")[0]
            assert stored[1] == ROWS
            assert stored[0] > ROWS or any(int(f[8]) > 0 for f in shrunk), "the second load stored copies"
            optimize(s.store)
            s.wait_rolled_up()
            assert rows(conn, "SELECT count(*), count(DISTINCT event_id) FROM ad_clicks")[0] == (ROWS, ROWS)
            clicks, users = csv_counts(ROWS)
            # With ingest stopped, each day partition is one clustered file.
            assert files(s.store, "ad_clicks") == len(clicks)
            for table in ["ad_clicks_minute", "ad_clicks_hour", "ad_clicks_day"]:
                got = dict(rows(conn, f"SELECT CAST(window_start AS DATE), sum(clicks) FROM {table} GROUP BY 1"))
                per_day = collections.Counter()
                for d, c in got.items():
                    per_day[d] += c
                assert dict(per_day) == clicks, table
            got = rows(conn, "SELECT CAST(window_start AS DATE), count(DISTINCT user_id) FROM "
                             "(SELECT date_trunc('day', event_time) AS window_start, user_id FROM ad_clicks) GROUP BY 1")
            assert dict(got) == users
            assert rows(conn, "SELECT sum(clicks) FROM ad_clicks_month")[0][0] == ROWS
            for table in ["ad_clicks_minute", "ad_clicks_hour"]:
                assert files(s.store, table) == len(clicks), table
    finally:
        s.stop()


def test_vacuum_keeps_recent_files_and_refuses_a_short_retention(tmp_path):
    s = Server(tmp_path / "lake", "--optimize-interval", "0")
    try:
        s.load(2_000)
        s.wait_rolled_up()
        s.load(3_000)  # 2,000 copies and 1,000 new clicks: rollups rewritten
        s.wait_rolled_up()
        optimize(s.store)  # copies removed: raw files replaced
        s.wait_rolled_up()  # the compactor rolls the rewritten dates up again
        before = DeltaTable(f"{s.store}/ad_clicks", storage_options=storage_options()).to_pyarrow_table().num_rows
        out = subprocess.run([clicklake_bin(), "vacuum", "--store", s.store, "--dry-run"],
                             check=True, capture_output=True, text=True).stdout
        # Files replaced by optimize a moment ago are younger than 7 days: kept.
        assert "vacuumed: 0 unreferenced file(s)" in out, out
        bad = subprocess.run([clicklake_bin(), "vacuum", "--store", s.store, "--retention", "1h"],
                             capture_output=True, text=True)
        assert bad.returncode != 0
        assert "--force" in bad.stderr, bad.stderr
        forced = subprocess.run([clicklake_bin(), "vacuum", "--store", s.store, "--retention", "0s", "--force"],
                                capture_output=True, text=True)
        assert forced.returncode == 0, forced.stderr
        forced = forced.stdout
        deleted = int(forced.split("vacuumed: ")[1].split()[0])
        assert deleted > 0, forced
        after = DeltaTable(f"{s.store}/ad_clicks", storage_options=storage_options()).to_pyarrow_table().num_rows
        assert after == before == 3_000
    finally:
        s.stop()


def test_retention_drops_old_raw_dates_and_old_windows_per_table(tmp_path):
    """Raw events kept from 2017-11-08 on, day windows only after the cutoff
    instant, hour and month windows forever: each table by its own retention."""
    import adbc_driver_flightsql.dbapi as flightsql

    s = Server(tmp_path / "lake", "--optimize-interval", "0")
    try:
        s.load(3_000)
        s.wait_rolled_up()
        # A retention that puts the cutoff on 2017-11-08 at today's time of day.
        days = (datetime.date.today() - datetime.date(2017, 11, 8)).days
        out = subprocess.run([clicklake_bin(), "optimize", "--store", s.store,
                              "--raw-retention", f"{days}days", "--day-retention", f"{days}days"],
                             check=True, capture_output=True, text=True).stdout
        clicks, _ = csv_counts(3_000)
        kept_raw = sum(c for d, c in clicks.items() if d >= datetime.date(2017, 11, 8))
        expired_raw = sum(clicks.values()) - kept_raw
        assert re.search(rf"^ad_clicks\s.*expired rows\s+{expired_raw}$", out, re.M), out
        with flightsql.connect(s.uri, autocommit=True) as conn:
            assert rows(conn, "SELECT count(*) FROM ad_clicks")[0][0] == kept_raw
            assert rows(conn, "SELECT min(event_time) >= TIMESTAMP '2017-11-08' FROM ad_clicks")[0][0]
            days_left = rows(conn, "SELECT CAST(window_start AS DATE), sum(clicks) FROM ad_clicks_day GROUP BY 1 ORDER BY 1")
            assert days_left == [(datetime.date(2017, 11, 9), clicks[datetime.date(2017, 11, 9)])]
            # Tables without a retention keep every window.
            assert rows(conn, "SELECT sum(clicks) FROM ad_clicks_hour")[0][0] == 3_000
            assert rows(conn, "SELECT sum(clicks) FROM ad_clicks_month")[0][0] == 3_000
    finally:
        s.stop()
