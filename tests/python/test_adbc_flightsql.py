"""The Python ADBC Flight SQL driver against a real clicklake server loaded
with the first 3,000 rows of the real TalkingData log.

Expected values were counted from data/talkingdata_train_sample.csv with
Python's csv module, independently of clicklake, and written in here."""

import datetime

import adbc_driver_flightsql.dbapi as flightsql
import pytest

from conftest import rows, wait_for

UTC = datetime.timezone.utc


def test_clicks_per_day_from_the_day_rollup(conn):
    assert rows(conn, "SELECT CAST(window_start AS DATE) AS day, sum(clicks) FROM ad_clicks_day "
                      "GROUP BY window_start ORDER BY day") == [
        (datetime.date(2017, 11, 6), 134),
        (datetime.date(2017, 11, 7), 990),
        (datetime.date(2017, 11, 8), 1023),
        (datetime.date(2017, 11, 9), 853),
    ]


def test_unique_users_per_day_from_raw_events(conn):
    assert rows(conn, "SELECT CAST(event_time AS DATE), count(DISTINCT user_id) FROM ad_clicks "
                      "GROUP BY 1 ORDER BY 1") == [
        (datetime.date(2017, 11, 6), 132),
        (datetime.date(2017, 11, 7), 932),
        (datetime.date(2017, 11, 8), 942),
        (datetime.date(2017, 11, 9), 791),
    ]


def test_top_ads(conn):
    assert rows(conn, "SELECT ad_id, sum(clicks) AS c FROM ad_clicks_month "
                      "GROUP BY ad_id ORDER BY c DESC, ad_id LIMIT 3") == [
        ("3-280", 254), ("18-107", 130), ("15-245", 86),
    ]


def test_ad_click_stats_per_day(conn):
    got = rows(conn, "SELECT window_start, clicks, unique_users, conversions, clicks_by_device "
                     "FROM ad_click_stats('3-280', '2017-11-06T00:00:00Z', '2017-11-10T00:00:00Z', 'day') "
                     "ORDER BY window_start")
    assert got == [
        (datetime.datetime(2017, 11, 7, tzinfo=UTC), 71, 71, 0, '{"1":70,"2":1}'),
        (datetime.datetime(2017, 11, 8, tzinfo=UTC), 110, 109, 0, '{"1":105,"2":5}'),
        (datetime.datetime(2017, 11, 9, tzinfo=UTC), 73, 73, 0, '{"1":71,"2":2}'),
    ]


def test_ad_click_stats_per_hour(conn):
    got = rows(conn, "SELECT window_start, clicks, unique_users "
                     "FROM ad_click_stats('3-280', '2017-11-06', '2017-11-10', 'hour') "
                     "ORDER BY window_start")
    assert len(got) == 50
    assert got[:5] == [
        (datetime.datetime(2017, 11, 7, h, tzinfo=UTC), n, n)
        for h, n in [(0, 10), (1, 8), (2, 6), (3, 7), (4, 6)]
    ]


def test_user_ad_clicks(conn):
    got = rows(conn, "SELECT ad_id, event_time FROM user_ad_clicks('105560', '2017-11-01', '2017-12-01') "
                     "ORDER BY event_time")
    assert got == [
        ("25-259", datetime.datetime(2017, 11, 7, 13, 40, 27, tzinfo=UTC)),
        ("15-245", datetime.datetime(2017, 11, 7, 17, 12, 54, tzinfo=UTC)),
        ("20-478", datetime.datetime(2017, 11, 8, 12, 29, 14, tzinfo=UTC)),
        ("3-466", datetime.datetime(2017, 11, 8, 15, 0, 58, tzinfo=UTC)),
        ("26-121", datetime.datetime(2017, 11, 9, 0, 3, 7, tzinfo=UTC)),
    ]


def test_metadata_lists_the_tables_with_their_columns(conn):
    objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
    assert [c["catalog_name"] for c in objects] == ["clicklake"]
    schemas = objects[0]["catalog_db_schemas"]
    assert [s["db_schema_name"] for s in schemas] == ["public"]
    tables = {t["table_name"]: [c["column_name"] for c in t["table_columns"]]
              for t in schemas[0]["db_schema_tables"]}
    assert sorted(tables) == ["ad_clicks", "ad_clicks_day", "ad_clicks_hour",
                              "ad_clicks_minute", "ad_clicks_month"]
    assert tables["ad_clicks"][:4] == ["event_id", "ad_id", "user_id", "event_time"]
    assert tables["ad_clicks_hour"][:4] == ["window_start", "ad_id", "clicks", "unique_users"]
    schema = conn.adbc_get_table_schema("ad_clicks_day")
    assert schema.field("clicks").type == "int64"
    # Plain strings on the wire, which every Flight SQL client reads.
    assert schema.field("ad_id").type == "string"
    with conn.cursor() as cur:
        cur.execute("SELECT ad_id, event_id FROM ad_clicks LIMIT 1")
        assert [str(t) for t in cur.fetch_arrow_table().schema.types] == ["string", "string"]
    assert conn.adbc_get_table_types() == ["TABLE"]


def test_sql_errors_reach_the_client(conn):
    with conn.cursor() as cur:
        with pytest.raises(flightsql.Error, match="no_such_table"):
            cur.execute("SELECT * FROM no_such_table")
        with pytest.raises(flightsql.Error, match="granularity must be one of"):
            cur.execute("SELECT * FROM ad_click_stats('3-280', '2017-11-06', '2017-11-10', 'week')")


def test_a_second_load_changes_no_count(server, conn):
    before = rows(conn, "SELECT window_start, ad_id, clicks, unique_users FROM ad_clicks_hour ORDER BY 1, 2")
    server.load(3000)
    # Every raw row is now stored twice, each event id once.
    wait_for(conn, "SELECT count(*) FROM ad_clicks", 6000)
    wait_for(conn, "SELECT count(DISTINCT event_id) FROM ad_clicks", 3000)
    server.wait_rolled_up()
    assert rows(conn, "SELECT ad_id, sum(clicks) AS c FROM ad_clicks_month "
                      "GROUP BY ad_id ORDER BY c DESC, ad_id LIMIT 3") == [
        ("3-280", 254), ("18-107", 130), ("15-245", 86),
    ]
    assert rows(conn, "SELECT window_start, ad_id, clicks, unique_users FROM ad_clicks_hour ORDER BY 1, 2") == before
