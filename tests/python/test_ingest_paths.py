"""The other ingest paths, end to end with the real binary: gzip-compressed
`POST /v1/clicks`, Flight SQL bulk ingest (ADBC `adbc_ingest`), a plain Flight
`DoPut` of Arrow batches, `--unknown-fields reject`, and exactly-once counting
when the same events arrive several times through all of them at two ingest
nodes of one store.

Every expected value is computed here from the events the test itself sends."""

import collections
import datetime
import gzip
import json
import random
import subprocess
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow as pa
import pyarrow.flight as flight
import pytest

from conftest import Server, metrics, rows, start_role

UTC = datetime.timezone.utc
# pyarrow raises ArrowInvalid etc. (not FlightError) for some gRPC codes.
FLIGHT_ERRORS = (flight.FlightError, pa.ArrowException)
DROPPED = "clicklake_ingest_duplicates_dropped_total"


# ---------------------------------------------------------------- helpers

def http_post(http_addr, body: bytes, headers: dict):
    """POST raw bytes to /v1/clicks: (status, parsed JSON reply)."""
    req = urllib.request.Request(f"http://{http_addr}/v1/clicks", data=body, method="POST",
                                 headers={"content-type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def post_json(http_addr, events):
    return http_post(http_addr, json.dumps(events).encode(), {})


def post_gzip_ndjson(http_addr, events):
    body = gzip.compress("".join(json.dumps(e) + "\n" for e in events).encode())
    return http_post(http_addr, body, {"content-encoding": "gzip"})


def utc(dt: datetime.datetime) -> datetime.datetime:
    """A timestamp read back over Flight SQL as an aware UTC datetime."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def iso(dt: datetime.datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def micros(dt: datetime.datetime) -> int:
    delta = dt - datetime.datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def arrow_table(events, time_type=pa.timestamp("us", tz="UTC"), time_of=None):
    """Events (dicts with a datetime `time`) as an Arrow table with the event
    field names as columns; the time column is `timestamp` of `time_type`."""
    time_of = time_of or (lambda e: e["time"])
    cols = {name: pa.array([e.get(name) for e in events], pa.string())
            for name in ["event_id", "ad_id", "user_id", "device", "os", "country", "campaign_id"]}
    cols["timestamp"] = pa.array([time_of(e) for e in events], time_type)
    cols["is_conversion"] = pa.array([e.get("is_conversion", False) for e in events], pa.bool_())
    return pa.table(cols)


def json_event(e, timestamp=None):
    """An event dict with a datetime `time` as the JSON the HTTP API takes."""
    out = {k: v for k, v in e.items() if k != "time" and v is not None}
    out["timestamp"] = timestamp if timestamp is not None else iso(e["time"])
    return out


def do_put(uri, descriptor, table: pa.Table, batch_rows=None):
    """A plain Flight DoPut of `table` (in batches of `batch_rows`); the
    decoded JSON of the one PutResult."""
    client = flight.FlightClient(uri)
    try:
        writer, reader = client.do_put(descriptor, table.schema)
        try:
            for batch in table.to_batches(max_chunksize=batch_rows):
                writer.write_batch(batch)
            writer.done_writing()
            buf = reader.read()
        except FLIGHT_ERRORS as first:
            # A write can fail before the server's answer is read: close()
            # raises the server's status.
            try:
                writer.close()
            except FLIGHT_ERRORS as answer:
                raise answer from first
            raise
        writer.close()
        assert buf is not None, "DoPut answered no PutResult"
        return json.loads(buf.to_pybytes())
    finally:
        client.close()


def stored(conn, prefix):
    """(count(*), count(DISTINCT event_id)) of the raw rows whose id starts with prefix."""
    return rows(conn, f"SELECT count(*), count(DISTINCT event_id) FROM ad_clicks WHERE event_id LIKE '{prefix}%'")[0]


def rollup(conn, level, ad_prefix):
    """A rollup level's rows for the ads starting with ad_prefix:
    (window_start, ad_id, clicks, unique_users, conversions, by_device, by_country)."""
    got = rows(conn, f"SELECT window_start, ad_id, clicks, unique_users, conversions, clicks_by_device, "
                     f"clicks_by_country FROM ad_clicks_{level} WHERE ad_id LIKE '{ad_prefix}%' "
                     f"ORDER BY window_start, ad_id")
    return [(utc(w), a, c, u, conv, json.loads(d), json.loads(k)) for w, a, c, u, conv, d, k in got]


def expected_rollup(events, level):
    """The same rows computed in Python: each event id once, users distinct per window."""
    trunc = {"hour": lambda t: t.replace(minute=0, second=0, microsecond=0),
             "day": lambda t: t.replace(hour=0, minute=0, second=0, microsecond=0),
             "month": lambda t: t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)}[level]
    once = {e["event_id"]: e for e in events}
    groups = collections.defaultdict(list)
    for e in once.values():
        groups[(trunc(e["time"].astimezone(UTC)), e["ad_id"])].append(e)
    out = []
    for (w, ad), es in sorted(groups.items()):
        out.append((w, ad, len(es), len({e["user_id"] for e in es}),
                    sum(1 for e in es if e.get("is_conversion")),
                    dict(collections.Counter(e.get("device") or "unknown" for e in es)),
                    dict(collections.Counter(e.get("country") or "unknown" for e in es))))
    return out


def make_events(prefix, n, start, rng, ads=3, users=7, span_hours=30):
    """n events with ids prefix-0..n-1 on ads prefix-ad-*, times from `start`
    over span_hours, whole milliseconds."""
    out = []
    for i in range(n):
        t = start + datetime.timedelta(milliseconds=rng.randrange(span_hours * 3_600_000))
        out.append({"event_id": f"{prefix}-{i}", "ad_id": f"{prefix}-ad-{rng.randrange(ads)}",
                    "user_id": f"{prefix}-u{rng.randrange(users)}", "time": t,
                    "device": rng.choice(["1", "2", "3"]), "os": rng.choice(["13", "19"]),
                    "country": rng.choice(["DE", "FR", None]), "campaign_id": rng.choice(["c1", "c2"]),
                    "is_conversion": rng.random() < 0.2})
    return out


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    """One `clicklake serve` (default flags) for the single-path tests; each
    test uses its own event-id and ad-id prefix."""
    s = Server(tmp_path_factory.mktemp("paths") / "lake")
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def conn(node):
    with flightsql.connect(node.uri, autocommit=True) as c:
        yield c


# ---------------------------------------------------------------- 1. gzip over HTTP

def test_gzip_ndjson_stores_exactly_the_sent_events_and_rolls_them_up(node, conn):
    rng = random.Random(11)
    events = make_events("gz", 40, datetime.datetime(2017, 12, 1, 6, tzinfo=UTC), rng)
    lines = [json_event(e) for e in events]
    # Every fourth event with its time as epoch milliseconds, one as `location`.
    for i in range(0, len(lines), 4):
        lines[i]["timestamp"] = micros(events[i]["time"]) // 1000
    lines[1]["location"] = lines[1].pop("country", None) or "IT"
    events[1]["country"] = lines[1]["location"]
    # The same event twice in one body: both accepted, one copy written
    # (copies of an id within one flush are dropped), counted once.
    lines.append(dict(lines[5]))
    dropped = node.metrics().get(DROPPED, 0)
    status, reply = post_gzip_ndjson(node.http, lines)
    assert (status, reply) == (200, {"accepted": 41, "rejected": []})
    assert stored(conn, "gz-") == (40, 40)
    assert node.metrics()[DROPPED] - dropped == 1
    assert rows(conn, "SELECT country FROM ad_clicks WHERE event_id = 'gz-1'") == [(events[1]["country"],)]
    got = {eid: utc(t) for eid, t in rows(conn, "SELECT DISTINCT event_id, event_time FROM ad_clicks "
                                               "WHERE event_id LIKE 'gz-%'")}
    assert got == {e["event_id"]: e["time"] for e in events}

    # A gzip JSON array, sent as two concatenated gzip members.
    more = make_events("gzb", 6, datetime.datetime(2017, 12, 1, 6, tzinfo=UTC), rng)
    body = gzip.compress(b'[' + b",".join(json.dumps(json_event(e)).encode() for e in more[:3]))
    body += gzip.compress(b"," + b",".join(json.dumps(json_event(e)).encode() for e in more[3:]) + b"]")
    status, reply = http_post(node.http, body, {"content-encoding": "gzip"})
    assert (status, reply) == (200, {"accepted": 6, "rejected": []})
    assert stored(conn, "gzb-") == (6, 6)

    node.wait_rolled_up()
    assert rollup(conn, "day", "gz-ad-") == expected_rollup(events, "day")
    assert rollup(conn, "hour", "gz-ad-") == expected_rollup(events, "hour")
    assert rows(conn, "SELECT sum(clicks), sum(unique_users) FROM ad_click_stats('gz-ad-0', '2017-12-01', "
                      "'2017-12-03', 'day')") == [
        (sum(r[2] for r in expected_rollup(events, "day") if r[1] == "gz-ad-0"),
         sum(r[3] for r in expected_rollup(events, "day") if r[1] == "gz-ad-0"))]


def test_bad_gzip_is_400_other_encodings_are_415_and_nothing_is_stored(node, conn):
    event = {"event_id": "badgz-1", "ad_id": "badgz", "user_id": "u1", "timestamp": "2017-12-01T10:00:00Z"}
    # Not gzip at all.
    status, reply = http_post(node.http, json.dumps(event).encode(), {"content-encoding": "gzip"})
    assert status == 400, reply
    assert "not valid gzip" in reply["error"], reply
    # A gzip stream cut short.
    status, reply = http_post(node.http, gzip.compress(json.dumps(event).encode())[:-6],
                              {"content-encoding": "gzip"})
    assert status == 400, reply
    assert "gzip" in reply["error"], reply
    # Brotli is not offered.
    status, reply = http_post(node.http, json.dumps(event).encode(), {"content-encoding": "br"})
    assert status == 415, reply
    assert '"br"' in reply["error"] and "gzip" in reply["error"], reply
    assert stored(conn, "badgz-") == (0, 0)
    # `identity` is the plain body.
    status, reply = http_post(node.http, json.dumps(event).encode(), {"content-encoding": "identity"})
    assert (status, reply) == (200, {"accepted": 1, "rejected": []})
    assert stored(conn, "badgz-") == (1, 1)


def test_a_declared_length_over_64_mib_is_413_before_the_body_is_sent(node, conn):
    import socket
    host, port = node.http.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /v1/clicks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100000000\r\n\r\n[]")
        head = sock.recv(65536).decode(errors="replace")
    assert head.startswith("HTTP/1.1 413"), head
    assert "is over 67108864 bytes" in head, head


def test_a_gzip_body_over_64_mib_decompressed_is_413(node, conn):
    body = gzip.compress(b" " * (64 * 1024 * 1024) + json.dumps(
        {"event_id": "bomb-1", "ad_id": "bomb", "user_id": "u", "timestamp": "2017-12-01T10:00:00Z"}).encode(),
        compresslevel=1)
    assert len(body) < 1024 * 1024
    status, reply = http_post(node.http, body, {"content-encoding": "gzip"})
    assert status == 413, reply
    assert "over 67108864 bytes" in reply["error"], reply
    assert stored(conn, "bomb-") == (0, 0)


# ---------------------------------------------------------------- 2. Flight SQL bulk ingest

def test_adbc_ingest_appends_known_events(node, conn):
    rng = random.Random(22)
    events = make_events("ab", 25, datetime.datetime(2017, 12, 2, 0, tzinfo=UTC), rng, span_hours=20)
    with conn.cursor() as cur:
        assert cur.adbc_ingest("ad_clicks", arrow_table(events), mode="append") == 25
    assert stored(conn, "ab-") == (25, 25)
    got = rows(conn, "SELECT event_id, ad_id, user_id, event_time, device, os, country, campaign_id, is_conversion "
                     "FROM ad_clicks WHERE event_id LIKE 'ab-%'")
    assert sorted((r[0], r[1], r[2], utc(r[3]), *r[4:]) for r in got) == sorted(
        (e["event_id"], e["ad_id"], e["user_id"], e["time"], e["device"], e["os"], e["country"],
         e["campaign_id"], e["is_conversion"]) for e in events)
    # Sending the same table again appends copies that count once.
    with conn.cursor() as cur:
        assert cur.adbc_ingest("ad_clicks", arrow_table(events), mode="append") == 25
    assert stored(conn, "ab-") == (50, 25)
    node.wait_rolled_up()
    assert rollup(conn, "hour", "ab-ad-") == expected_rollup(events, "hour")
    assert rollup(conn, "day", "ab-ad-") == expected_rollup(events, "day")


def test_adbc_ingest_other_modes_and_tables_are_refused(node, conn):
    events = make_events("abx", 3, datetime.datetime(2017, 12, 2, 0, tzinfo=UTC), random.Random(1))
    table = arrow_table(events)
    with conn.cursor() as cur:
        with pytest.raises(flightsql.Error, match="ad_clicks cannot be replaced: click events are only appended"):
            cur.adbc_ingest("ad_clicks", table, mode="replace")
        with pytest.raises(flightsql.Error, match=r'table ad_clicks exists .*mode="append"'):
            cur.adbc_ingest("ad_clicks", table, mode="create")
        with pytest.raises(flightsql.Error, match="bulk ingest goes to clicklake.public.ad_clicks only, not other"):
            cur.adbc_ingest("other", table, mode="append")
        with pytest.raises(flightsql.Error, match="bulk ingest goes to clicklake.public.ad_clicks only"):
            cur.adbc_ingest("ad_clicks_day", table, mode="append")
    assert stored(conn, "abx-") == (0, 0)
    # create_append onto the existing table is an append.
    with conn.cursor() as cur:
        assert cur.adbc_ingest("ad_clicks", table, mode="create_append") == 3
    assert stored(conn, "abx-") == (3, 3)


def test_adbc_ingest_with_bad_rows_stores_the_others_and_names_the_rows(node, conn):
    t = datetime.datetime(2017, 12, 2, 9, tzinfo=UTC)
    events = [{"event_id": f"abb-{i}", "ad_id": "abb-ad", "user_id": f"u{i}", "time": t} for i in range(6)]
    events[2]["user_id"] = None
    events[4]["time"] = datetime.datetime(1999, 12, 31, 23, 0, tzinfo=UTC)
    with conn.cursor() as cur:
        with pytest.raises(flightsql.Error) as err:
            cur.adbc_ingest("ad_clicks", arrow_table(events), mode="append")
    message = str(err.value)
    assert "2 rows refused, 4 rows stored" in message, message
    assert "row 2: user_id: is required" in message, message
    assert "row 4: timestamp: 1999-12-31T23:00:00" in message and "is before 2000-01-01" in message, message
    assert sorted(r[0] for r in rows(conn, "SELECT event_id FROM ad_clicks WHERE event_id LIKE 'abb-%'")) == [
        "abb-0", "abb-1", "abb-3", "abb-5"]


def test_every_documented_timestamp_column_type_gives_the_same_instant(node, conn):
    times = [datetime.datetime(2017, 12, 3, 10, 0, 0, tzinfo=UTC),
             datetime.datetime(2017, 12, 3, 23, 59, 59, 250000, tzinfo=UTC),
             datetime.datetime(2024, 2, 29, 12, 30, 0, 500000, tzinfo=UTC)]
    plus2 = datetime.timezone(datetime.timedelta(hours=2))
    forms = {
        "us_utc": (pa.timestamp("us", tz="UTC"), lambda t: t),
        "ns_naive": (pa.timestamp("ns"), lambda t: t.replace(tzinfo=None)),
        "ms_plus2": (pa.timestamp("ms", tz="+02:00"), lambda t: t),
        "epoch_s_int": (pa.int64(), lambda t: micros(t) // 1_000_000),
        "epoch_ms_int": (pa.int64(), lambda t: micros(t) // 1000),
        "epoch_s_float": (pa.float64(), lambda t: micros(t) / 1e6),
        "rfc3339_offset": (pa.string(), lambda t: t.astimezone(plus2).isoformat()),
    }
    expected = {}
    with conn.cursor() as cur:
        for name, (typ, conv) in forms.items():
            events = [{"event_id": f"ts-{name}-{i}", "ad_id": "ts", "user_id": "u", "time": t}
                      for i, t in enumerate(times)]
            if name == "epoch_s_int":  # whole seconds only
                for e in events:
                    e["time"] = e["time"].replace(microsecond=0)
            if name == "epoch_ms_int":
                for e in events:
                    e["time"] = e["time"].replace(microsecond=e["time"].microsecond // 1000 * 1000)
            assert cur.adbc_ingest("ad_clicks", arrow_table(events, typ, lambda e: conv(e["time"])),
                                   mode="append") == 3, name
            expected.update({e["event_id"]: e["time"] for e in events})
    got = {eid: utc(t) for eid, t in rows(conn, "SELECT event_id, event_time FROM ad_clicks WHERE event_id LIKE 'ts-%'")}
    assert got == expected


# ---------------------------------------------------------------- 3. plain Flight DoPut

def test_flight_do_put_answers_accepted_and_rejected_rows(node, conn):
    t = datetime.datetime(2017, 12, 4, 8, tzinfo=UTC)
    events = [{"event_id": f"fp-{i}", "ad_id": "fp-ad", "user_id": f"u{i % 3}", "time": t + datetime.timedelta(minutes=i)}
              for i in range(7)]
    events[1]["ad_id"] = None
    events[5]["time"] = datetime.datetime(1990, 1, 1, tzinfo=UTC)
    table = arrow_table(events)
    # is_conversion as 0/1 integers; 2 is refused.
    conv = [0, 1, 0, 1, 2, 0, 1]
    table = table.set_column(table.schema.get_field_index("is_conversion"), "is_conversion", pa.array(conv, pa.int64()))
    # Three batches (3 + 3 + 1 rows): row indexes count across the batches.
    reply = do_put(node.uri, flight.FlightDescriptor.for_path("ad_clicks"), table, batch_rows=3)
    assert reply["accepted"] == 4, reply
    assert [(r["index"], r["field"]) for r in reply["rejected"]] == [
        (1, "ad_id"), (4, "is_conversion"), (5, "timestamp")], reply
    assert reply["rejected"][0]["reason"] == "is required"
    assert reply["rejected"][1]["reason"] == "must be true, false, 0 or 1, got 2"
    assert "before 2000-01-01" in reply["rejected"][2]["reason"]
    got = rows(conn, "SELECT event_id, is_conversion FROM ad_clicks WHERE event_id LIKE 'fp-%' ORDER BY event_id")
    assert got == [("fp-0", False), ("fp-2", False), ("fp-3", True), ("fp-6", True)]


def test_flight_do_put_with_another_descriptor_is_refused(node, conn):
    events = [{"event_id": "fpx-0", "ad_id": "fpx", "user_id": "u", "time": datetime.datetime(2017, 12, 4, tzinfo=UTC)}]
    for descriptor in [flight.FlightDescriptor.for_path("other"),
                       flight.FlightDescriptor.for_path("ad_clicks", "extra")]:
        with pytest.raises(FLIGHT_ERRORS, match=r'descriptor path \["ad_clicks"\]'):
            do_put(node.uri, descriptor, arrow_table(events))
    assert stored(conn, "fpx-") == (0, 0)


def test_flight_do_put_with_a_wrong_column_type_refuses_the_whole_upload(node, conn):
    events = [{"event_id": f"fpt-{i}", "ad_id": "x", "user_id": "u", "time": datetime.datetime(2017, 12, 4, tzinfo=UTC)}
              for i in range(3)]
    table = arrow_table(events)
    table = table.set_column(table.schema.get_field_index("ad_id"), "ad_id", pa.array([1, 2, 3], pa.int64()))
    with pytest.raises(FLIGHT_ERRORS, match="column ad_id: must be a string column"):
        do_put(node.uri, flight.FlightDescriptor.for_path("ad_clicks"), table)
    # The same through bulk ingest.
    with conn.cursor() as cur:
        with pytest.raises(flightsql.Error, match="column ad_id: must be a string column"):
            cur.adbc_ingest("ad_clicks", table, mode="append")
    assert stored(conn, "fpt-") == (0, 0)


# ---------------------------------------------------------------- 4. unknown fields

def test_unknown_fields_reject_names_the_field_and_keeps_the_rest(tmp_path):
    s = Server(tmp_path / "lake", "--unknown-fields", "reject")
    try:
        base = {"ad_id": "uf", "user_id": "u1", "timestamp": "2017-12-05T10:00:00Z"}
        status, reply = post_json(s.http, [{"event_id": "uf-0", **base},
                                           {"event_id": "uf-1", **base, "colour": "red"},
                                           {"event_id": "uf-2", **base, "location": "DE"}])
        assert status == 200, reply
        assert reply["accepted"] == 2
        assert [(r["index"], r["field"]) for r in reply["rejected"]] == [(1, "colour")], reply
        assert "is not an event field" in reply["rejected"][0]["reason"]
        # Gzip NDJSON takes the same rule.
        status, reply = post_gzip_ndjson(s.http, [{"event_id": "uf-3", **base, "colour": "red"}])
        assert status == 400 and [(r["index"], r["field"]) for r in reply["rejected"]] == [(0, "colour")], reply
        # An Arrow column that is not an event field refuses the upload, naming it.
        table = arrow_table([{"event_id": "uf-4", "ad_id": "uf", "user_id": "u1",
                              "time": datetime.datetime(2017, 12, 5, 10, tzinfo=UTC)}])
        with pytest.raises(FLIGHT_ERRORS, match="column colour: is not an event field"):
            do_put(s.uri, flight.FlightDescriptor.for_path("ad_clicks"),
                   table.append_column("colour", pa.array(["red"])))
        with flightsql.connect(s.uri, autocommit=True) as c:
            assert rows(c, "SELECT event_id, country FROM ad_clicks ORDER BY event_id") == [
                ("uf-0", None), ("uf-2", "DE")]
        # A producer's own field names do not become metric labels.
        m = metrics(s.http)
        assert m['clicklake_ingest_events_rejected_total{field="unknown_field"}'] == 2
        assert not [k for k in m if "colour" in k], [k for k in m if "colour" in k]
    finally:
        s.stop()


def test_unknown_fields_are_ignored_by_default(node, conn):
    status, reply = post_json(node.http, {"event_id": "ufd-0", "ad_id": "ufd", "user_id": "u1",
                                          "timestamp": "2017-12-05T10:00:00Z", "colour": "red"})
    assert (status, reply) == (200, {"accepted": 1, "rejected": []})
    table = arrow_table([{"event_id": "ufd-1", "ad_id": "ufd", "user_id": "u1",
                          "time": datetime.datetime(2017, 12, 5, 10, tzinfo=UTC)}])
    reply = do_put(node.uri, flight.FlightDescriptor.for_path("ad_clicks"),
                   table.append_column("colour", pa.array(["red"])))
    assert reply == {"accepted": 1, "rejected": []}
    assert rows(conn, "SELECT event_id FROM ad_clicks WHERE ad_id = 'ufd' ORDER BY event_id") == [("ufd-0",), ("ufd-1",)]


# ---------------------------------------------------------------- 5. exactly once across paths and nodes

def send(path, grpc, http, events):
    """Send one request of `events` through `path`; assert all were stored."""
    if path == "json":
        status, reply = post_json(http, [json_event(e) for e in events])
        assert (status, reply) == (200, {"accepted": len(events), "rejected": []}), reply
    elif path == "gzip":
        # Epoch milliseconds in this path.
        status, reply = post_gzip_ndjson(http, [json_event(e, micros(e["time"]) // 1000) for e in events])
        assert (status, reply) == (200, {"accepted": len(events), "rejected": []}), reply
    elif path == "adbc":
        with flightsql.connect(f"grpc://{grpc}", autocommit=True) as c, c.cursor() as cur:
            table = arrow_table(events, pa.timestamp("ms", tz="UTC"))
            assert cur.adbc_ingest("ad_clicks", table, mode="append") == len(events)
    elif path == "doput":
        table = arrow_table(events, pa.timestamp("ns"), lambda e: e["time"].replace(tzinfo=None))
        reply = do_put(f"grpc://{grpc}", flight.FlightDescriptor.for_path("ad_clicks"), table, batch_rows=40)
        assert reply == {"accepted": len(events), "rejected": []}, reply
    else:
        raise ValueError(path)


def test_resends_through_every_path_at_two_nodes_count_once(tmp_path):
    rng = random.Random(20171206)
    events = make_events("xo", 300, datetime.datetime(2017, 12, 6, 18, tzinfo=UTC), rng,
                         ads=4, users=40, span_hours=36)
    paths = ["json", "gzip", "adbc", "doput"]
    sends = [(rng.choice(paths), rng.randrange(2), e) for e in events for _ in range(rng.randint(1, 3))]
    rng.shuffle(sends)
    copies = len(sends)
    by_route = collections.defaultdict(list)
    for p, n, e in sends:
        by_route[(p, n)].append(e)
    requests = [(p, n, es[i:i + 50]) for (p, n), es in sorted(by_route.items()) for i in range(0, len(es), 50)]
    rng.shuffle(requests)
    assert {p for p, _, _ in requests} == set(paths) and {n for _, n, _ in requests} == {0, 1}

    store = tmp_path / "lake"
    procs = []
    try:
        ingest_flags = ["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--flush-interval", "200ms"]
        a = start_role(store, "ingest", *ingest_flags)
        procs.append(a[0])
        b = start_role(store, "ingest", *ingest_flags)
        procs.append(b[0])
        c, _, c_http = start_role(store, "compactor", "--http-addr", "127.0.0.1:0", "--rollup-interval", "200ms")
        procs.append(c)
        q, q_grpc, _ = start_role(store, "query", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
        procs.append(q)
        nodes = [a, b]

        with ThreadPoolExecutor(4) as pool:
            for f in [pool.submit(send, p, nodes[n][1], nodes[n][2], es) for p, n, es in requests]:
                f.result(timeout=120)

        with flightsql.connect(f"grpc://{q_grpc}", autocommit=True) as conn:
            # Every copy was written, except copies of an id that met in one flush of a node.
            dropped = sum(metrics(n[2]).get(DROPPED, 0) for n in nodes)
            assert rows(conn, "SELECT count(*), count(DISTINCT event_id) FROM ad_clicks") == [(copies - dropped, 300)]
            # Every copy, whichever path and encoding it came by, holds the same values.
            got = rows(conn, "SELECT DISTINCT event_id, ad_id, user_id, event_time, device, os, country, "
                             "campaign_id, is_conversion FROM ad_clicks")
            assert sorted((r[0], r[1], r[2], utc(r[3]), *r[4:]) for r in got) == sorted(
                (e["event_id"], e["ad_id"], e["user_id"], e["time"], e["device"], e["os"], e["country"],
                 e["campaign_id"], e["is_conversion"]) for e in events)

            raw = max(metrics(n[2])["clicklake_ingest_table_version"] for n in nodes)
            deadline = time.time() + 120
            while metrics(c_http).get("clicklake_compactor_rolled_up_version", -1) < raw:
                assert time.time() < deadline, f"the compactor did not catch up to version {raw}"
                time.sleep(0.2)

            for level in ["hour", "day", "month"]:
                assert rollup(conn, level, "xo-ad-") == expected_rollup(events, level), level
            for level in ["minute", "hour", "day", "month"]:
                assert rows(conn, f"SELECT sum(clicks) FROM ad_clicks_{level}") == [(300,)], level
            # Per hour over all ads: clicks and distinct users, as a raw recount in Python.
            per_hour = collections.defaultdict(set)
            for e in events:
                per_hour[e["time"].replace(minute=0, second=0, microsecond=0)].add(e["user_id"])
            clicks_per_hour = collections.Counter(e["time"].replace(minute=0, second=0, microsecond=0) for e in events)
            got = rows(conn, "SELECT date_trunc('hour', event_time) AS h, count(DISTINCT event_id), "
                             "count(DISTINCT user_id) FROM ad_clicks GROUP BY 1 ORDER BY 1")
            assert [(utc(h), n, u) for h, n, u in got] == [
                (h, clicks_per_hour[h], len(per_hour[h])) for h in sorted(per_hour)]
            # The stats function answers the same as the Python recount.
            hourly = [r for r in expected_rollup(events, "hour") if r[1] == "xo-ad-2"]
            got = rows(conn, "SELECT window_start, clicks, unique_users, conversions FROM "
                             "ad_click_stats('xo-ad-2', '2017-12-06', '2017-12-09', 'hour') ORDER BY window_start")
            assert [(utc(w), n, u, conv) for w, n, u, conv in got] == [(r[0], r[2], r[3], r[4]) for r in hourly]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
