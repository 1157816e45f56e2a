"""The tables clicklake writes are open Delta tables: the Python `deltalake`
package and Polars read them (on local files, and on S3 in the S3 run) with
the same rows and values as clicklake's own answers. Expected values for the
first 3,000 rows of the real log were counted with Python's csv module."""

import datetime

import polars as pl
from deltalake import DeltaTable

from conftest import rows, storage_options

UTC = datetime.timezone.utc


def test_deltalake_reads_the_raw_and_rollup_tables(server, conn):
    opts = storage_options()
    raw = DeltaTable(f"{server.store}/ad_clicks", storage_options=opts).to_pyarrow_table()
    # Every stored copy (the session loads the slice twice in another test, so
    # compare with clicklake's own count) and 3,000 distinct events.
    assert raw.num_rows == rows(conn, "SELECT count(*) FROM ad_clicks")[0][0]
    assert len(set(raw.column("event_id").to_pylist())) == 3000
    day = DeltaTable(f"{server.store}/ad_clicks_day", storage_options=opts).to_pyarrow_table()
    per_day = {}
    for w, c in zip(day.column("window_start").to_pylist(), day.column("clicks").to_pylist()):
        per_day[w.date()] = per_day.get(w.date(), 0) + c
    assert per_day == {datetime.date(2017, 11, 6): 134, datetime.date(2017, 11, 7): 990,
                       datetime.date(2017, 11, 8): 1023, datetime.date(2017, 11, 9): 853}


def test_polars_reads_the_rollups_with_the_same_values(server, conn):
    month = pl.read_delta(f"{server.store}/ad_clicks_month", storage_options=storage_options())
    top = (month.group_by("ad_id").agg(pl.col("clicks").sum()).sort(["clicks", "ad_id"], descending=[True, False])
           .head(3).rows())
    assert top == [("3-280", 254), ("18-107", 130), ("15-245", 86)]
    hour = pl.read_delta(f"{server.store}/ad_clicks_hour", storage_options=storage_options())
    got = hour.filter(pl.col("ad_id") == "3-280").sort("window_start").head(2)
    assert got.select(["window_start", "clicks", "unique_users"]).rows() == [
        (datetime.datetime(2017, 11, 7, 0, tzinfo=UTC), 10, 10),
        (datetime.datetime(2017, 11, 7, 1, tzinfo=UTC), 8, 8),
    ]
