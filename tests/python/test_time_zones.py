"""Time handling through the ADBC driver: UTC on the wire, days of a named
time zone (23 and 25 hours on DST days), and the timestamp literal forms BI
tools send. Expected values are computed here (Python's zoneinfo and csv
over the first 3,000 rows of the log), not by clicklake."""

from collections import Counter
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import adbc_driver_flightsql.dbapi as flightsql
import pytest

from conftest import csv_rows, rows


def _click_times(n=3000):
    for row in csv_rows(n):
        yield datetime.strptime(row[5], "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)


@pytest.mark.parametrize("day, hours", [("2026-03-29", 23), ("2026-10-25", 25), ("2026-06-01", 24)])
def test_a_local_day_has_the_hours_its_time_zone_gives_it(conn, day, hours):
    # Every UTC hour of three days around `day`, grouped by Berlin day.
    got = rows(conn, f"""
        SELECT CAST(date_trunc('day', t AT TIME ZONE 'Europe/Berlin') AS VARCHAR) AS d, count(*) AS n
        FROM (SELECT arrow_cast(unnest(generate_series(
                  TIMESTAMP '{day}T00:00:00' - INTERVAL '1 day', TIMESTAMP '{day}T00:00:00' + INTERVAL '2 day',
                  INTERVAL '1 hour')), 'Timestamp(Microsecond, Some("UTC"))') AS t)
        GROUP BY 1""")
    local = {d[:10]: n for d, n in got}
    assert local[day] == hours


def test_clicks_per_day_in_a_named_time_zone_match_the_csv(conn):
    tz = ZoneInfo("Asia/Shanghai")
    expected = Counter(t.astimezone(tz).strftime("%Y-%m-%d") for t in _click_times())
    got = rows(conn, """
        SELECT CAST(date_trunc('day', event_time AT TIME ZONE 'Asia/Shanghai') AS VARCHAR), count(DISTINCT event_id)
        FROM ad_clicks GROUP BY 1""")
    assert {d[:10]: n for d, n in got} == dict(expected)


def test_times_come_back_in_utc(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT event_time FROM ad_clicks LIMIT 1")
        table = cur.fetch_arrow_table()
    assert str(table.schema.field("event_time").type) == "timestamp[us, tz=UTC]"


@pytest.mark.parametrize("literal", [
    "'2017-11-07 00:00:00'",
    "'2017-11-07T00:00:00Z'",
    "'2017-11-07'",
    "'2017-11-07T01:00:00+01:00'",
    "TIMESTAMP '2017-11-07 00:00:00'",
    "TIMESTAMP '2017-11-07 01:00:00+01:00'",
    "CAST('2017-11-07 00:00:00' AS TIMESTAMP)",
    "{ts '2017-11-07 00:00:00'}",
])
def test_timestamp_literals_bi_tools_send_mean_the_same_utc_instant(conn, literal):
    since = datetime(2017, 11, 7, tzinfo=timezone.utc)
    expected = sum(t >= since for t in _click_times())
    assert rows(conn, f"SELECT count(DISTINCT event_id) FROM ad_clicks WHERE event_time >= {literal}") == [(expected,)]


@pytest.mark.parametrize("literal, message", [
    ("2017-11-07", "Cannot infer common argument type for comparison operation Timestamp"),
    ("'07/11/2017'", "Error parsing timestamp from '07/11/2017'"),
])
def test_a_timestamp_literal_that_is_not_one_is_refused_clearly(conn, literal, message):
    with pytest.raises(flightsql.Error, match=message):
        rows(conn, f"SELECT count(*) FROM ad_clicks WHERE event_time >= {literal}")
    assert rows(conn, "SELECT 1") == [(1,)]
