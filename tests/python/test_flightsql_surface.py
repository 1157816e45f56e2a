"""Prepared statements, empty results and guardrails through the Python ADBC
Flight SQL driver. Expected counts were taken from the CSV with Python's csv
module (first 3,000 rows): 3-280 has 254 clicks, 18-107 has 130."""

import adbc_driver_flightsql.dbapi as flightsql
import pytest

import pyarrow.flight as flight

from conftest import Server, flight_command, rows


def test_prepared_statement_runs_twice_with_different_parameters(conn):
    sql = "SELECT sum(clicks) FROM ad_clicks_day WHERE ad_id = $1"
    with conn.cursor() as cur:
        cur.execute(sql, parameters=("3-280",))
        assert cur.fetchall() == [(254,)]
        cur.execute(sql, parameters=("18-107",))
        assert cur.fetchall() == [(130,)]


def test_prepared_statement_reports_its_parameter_schema(conn):
    with conn.cursor() as cur:
        schema = cur.adbc_prepare("SELECT clicks FROM ad_clicks_hour WHERE ad_id = $1 AND clicks > $2")
        assert schema.names == ["$1", "$2"]
        assert [str(t) for t in schema.types] == ["string", "int64"]


def test_prepared_statement_with_several_parameters(conn):
    got = rows(conn, "SELECT count(*) FROM ad_click_stats('3-280', '2017-11-06', '2017-11-10', 'hour') "
                     "WHERE clicks >= $1 AND clicks <= $2", parameters=(3, 6))
    # 3-280's hourly click counts in the CSV slice: 19 of its 50 hours have 3 to 6.
    assert got == [(19,)]


def test_empty_result_keeps_its_schema(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT ad_id, clicks FROM ad_clicks_day WHERE ad_id = 'no-such-ad'")
        assert cur.fetchall() == []
        assert [d[0] for d in cur.description] == ["ad_id", "clicks"]


def test_ddl_and_dml_are_refused_and_the_server_keeps_serving(conn):
    with conn.cursor() as cur:
        for sql in ["CREATE TABLE t AS SELECT 1", "DROP TABLE ad_clicks", "INSERT INTO ad_clicks_day SELECT * FROM ad_clicks_day"]:
            with pytest.raises(flightsql.Error, match="read-only: only queries"):
                cur.execute(sql)
        cur.adbc_statement.set_sql_query("DELETE FROM ad_clicks")
        with pytest.raises(flightsql.Error, match="read-only: only queries"):
            cur.adbc_statement.execute_update()
    assert rows(conn, "SELECT sum(clicks) FROM ad_clicks_month") == [(3000,)]


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    """A server with tight guardrails over the first 3,000 rows."""
    s = Server(tmp_path_factory.mktemp("limited") / "lake",
               "--query-timeout", "2s", "--max-result-rows", "1000",
               "--query-memory-limit", "65536")
    try:
        s.load(3000)
        s.wait_rolled_up()
        with flightsql.connect(s.uri, autocommit=True) as conn:
            yield conn
    finally:
        s.stop()


def test_result_over_the_row_cap_fails_clearly(limited):
    with pytest.raises(flightsql.Error, match=r"more than 1000 rows \(--max-result-rows\)"):
        rows(limited, "SELECT event_id FROM ad_clicks")
    assert rows(limited, "SELECT count(*) FROM ad_clicks") == [(3000,)]


def test_query_over_its_memory_limit_fails_clearly(limited):
    with pytest.raises(flightsql.Error, match="Resources exhausted|memory"):
        rows(limited, "SELECT count(*) FROM ad_clicks a JOIN ad_clicks b ON a.user_id = b.user_id")
    assert rows(limited, "SELECT count(DISTINCT ad_id) FROM ad_clicks_month") == [(235,)]


def test_query_over_its_timeout_fails_clearly(limited):
    with pytest.raises(flightsql.Error, match=r"timeout of 2s"):
        rows(limited, "SELECT sum(value) FROM generate_series(1, 100000000000)")
    assert rows(limited, "SELECT sum(clicks) FROM ad_clicks_day") == [(3000,)]


def _call(server, message, fields=None):
    client = flight.FlightClient(server.uri)
    info = client.get_flight_info(flight.FlightDescriptor.for_command(flight_command(message, fields)))
    table = client.do_get(info.endpoints[0].ticket).read_all()
    assert table.schema == info.schema
    return table


def test_xdbc_type_info_lists_the_column_types(server):
    table = _call(server, "CommandGetXdbcTypeInfo")
    names = table.column("type_name").to_pylist()
    assert sorted(names) == ["BIGINT", "BOOLEAN", "DATE", "DOUBLE", "INTEGER", "TIMESTAMP", "VARCHAR"]


def test_key_calls_answer_empty_with_the_spec_schema(server):
    pk = _call(server, "CommandGetPrimaryKeys", {3: "ad_clicks"})
    assert pk.num_rows == 0
    assert pk.schema.names == ["catalog_name", "db_schema_name", "table_name", "column_name", "key_name",
                               "key_sequence"]
    for message in ["CommandGetExportedKeys", "CommandGetImportedKeys"]:
        keys = _call(server, message, {3: "ad_clicks"})
        assert keys.num_rows == 0
        assert keys.schema.names[:4] == ["pk_catalog_name", "pk_db_schema_name", "pk_table_name", "pk_column_name"]
        assert len(keys.schema.names) == 13


def test_a_result_of_10_million_cells_arrives_whole(conn):
    import pyarrow.compute as pc
    n = 1_000_000
    columns = ", ".join(f"value + {i} AS c{i}" for i in range(10))
    with conn.cursor() as cur:
        cur.execute(f"SELECT {columns} FROM generate_series(1, {n})")
        table = cur.fetch_arrow_table()
    assert (table.num_rows, table.num_columns) == (n, 10)
    # Sum of value + i over 1..n, by the formula.
    for i in range(10):
        assert pc.sum(table[f"c{i}"]).as_py() == n * (n + 1) // 2 + i * n


def _running(server) -> float:
    return server.metrics()["clicklake_query_running_statements"]


def test_a_cancelled_query_stops_on_the_server_and_the_server_keeps_serving(server, conn):
    import threading
    import time
    assert _running(server) == 0
    failures = []
    with flightsql.connect(server.uri, autocommit=True) as other, other.cursor() as cur:
        def run():
            try:
                # Minutes of work with no row to send before the end.
                cur.execute("SELECT count(*) FROM generate_series(1, 100000000000)")
                cur.fetchall()
            except Exception as e:  # the cancellation is what this test wants
                failures.append(e)
        worker = threading.Thread(target=run)
        worker.start()
        deadline = time.time() + 30
        while _running(server) < 1:
            assert time.time() < deadline, "the query never started"
            time.sleep(0.05)
        cur.adbc_cancel()
        worker.join(60)
        assert not worker.is_alive(), "the cancelled query still blocks its client"
    assert failures and "cancel" in str(failures[0]).lower(), failures
    deadline = time.time() + 10
    while _running(server) > 0:
        assert time.time() < deadline, "the server still runs the cancelled query"
        time.sleep(0.05)
    assert rows(conn, "SELECT sum(clicks) FROM ad_clicks_month") == [(3000,)]


def test_sql_info_names_the_server_honestly(conn):
    info = conn.adbc_get_info()
    assert info["vendor_name"] == "clicklake"
    assert info["vendor_version"] == "0.1.0"
    assert info["vendor_arrow_version"] == "1.3"


def test_wide_rows_arrive_split_under_the_message_limit(conn):
    import pyarrow.compute as pc
    # 2,000 rows of 100,000 bytes: 200 MB, three times one gRPC message's limit.
    with conn.cursor() as cur:
        cur.execute("SELECT value, repeat('x', 100000) AS wide FROM generate_series(1, 2000)")
        table = cur.fetch_arrow_table()
    assert table.num_rows == 2000
    assert pc.sum(pc.utf8_length(table["wide"])).as_py() == 200_000_000
    assert pc.sum(table["value"]).as_py() == 2000 * 2001 // 2
