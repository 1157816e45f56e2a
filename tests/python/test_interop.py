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


def test_datasketches_reads_and_merges_the_users_sketches(server, conn):
    """The `users_sketch` column is an Apache DataSketches HLL sketch: the
    DataSketches Python library (C++ inside, written independently of
    clicklake) decodes it, its estimate matches the exact `unique_users`,
    and a sketch it builds from the same user ids merges with ours without
    double counting (the same hashing)."""
    from datasketches import hll_sketch, hll_union, tgt_hll_type

    opts = storage_options()
    day = DeltaTable(f"{server.store}/ad_clicks_day", storage_options=opts).to_pyarrow_table().to_pylist()
    raw = DeltaTable(f"{server.store}/ad_clicks", storage_options=opts).to_pyarrow_table(
        columns=["ad_id", "user_id", "event_time"]).to_pylist()
    users = {}
    for r in raw:
        users.setdefault((r["event_time"].date(), r["ad_id"]), set()).add(r["user_id"])
    assert len(day) > 100
    for row in day:
        ours = hll_sketch.deserialize(row["users_sketch"])
        assert ours.lg_config_k == 17
        assert round(ours.get_estimate()) == row["unique_users"]
        ids = users[(row["window_start"].date(), row["ad_id"])]
        assert len(ids) == row["unique_users"]
        theirs = hll_sketch(17, tgt_hll_type.HLL_4)
        for u in ids:
            theirs.update(u)
        union = hll_union(17)
        union.update(ours)
        union.update(theirs)
        assert round(union.get_estimate()) == len(ids)
    # Days merge into the month of each ad without adding counts.
    month = {r["ad_id"]: r for r in DeltaTable(f"{server.store}/ad_clicks_month",
                                               storage_options=opts).to_pyarrow_table().to_pylist()}
    per_ad = {}
    for row in day:
        per_ad.setdefault(row["ad_id"], hll_union(17)).update(hll_sketch.deserialize(row["users_sketch"]))
    for ad, union in per_ad.items():
        assert round(union.get_estimate()) == month[ad]["unique_users"]
    assert any(len([r for r in day if r["ad_id"] == ad]) > 1 for ad in per_ad)
