"""The SQLAlchemy / DB-API path that Superset uses (flightsql-dbapi), against
the server holding the first 3,000 rows of the real log. Expected values were
counted from the CSV with Python's csv module."""

import flightsql
from sqlalchemy import create_engine, inspect, text


def engine(server):
    host, port = server.grpc.rsplit(":", 1)
    return create_engine(f"datafusion://{host}:{port}?insecure=true")


def test_sqlalchemy_query(server):
    with engine(server).connect() as c:
        got = c.execute(text("SELECT ad_id, sum(clicks) AS c FROM ad_clicks_month "
                             "GROUP BY ad_id ORDER BY c DESC, ad_id LIMIT 3")).fetchall()
    assert [tuple(r) for r in got] == [("3-280", 254), ("18-107", 130), ("15-245", 86)]


def test_sqlalchemy_reflection(server):
    i = inspect(engine(server))
    assert i.get_schema_names() == ["public"]
    assert i.get_table_names() == ["ad_clicks", "ad_clicks_day", "ad_clicks_hour", "ad_clicks_minute",
                                   "ad_clicks_month"]
    assert [c["name"] for c in i.get_columns("ad_clicks_day")][:4] == ["window_start", "ad_id", "clicks",
                                                                        "unique_users"]


def test_dbapi_cursor(server):
    host, port = server.grpc.rsplit(":", 1)
    conn = flightsql.connect(flightsql.FlightSQLClient(host=host, port=int(port), insecure=True))
    cur = conn.cursor()
    cur.execute("SELECT CAST(window_start AS DATE) AS d, sum(clicks) FROM ad_clicks_day "
                "GROUP BY window_start ORDER BY d")
    assert [r[1] for r in cur.fetchall()] == [134, 990, 1023, 853]
