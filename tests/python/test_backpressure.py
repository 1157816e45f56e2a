"""Backpressure: memory for buffered events is bounded by configuration.
A request that would overflow the buffer is refused at once with HTTP 503,
a retry hint and a reason, nothing of it is stored, and the same request
succeeds once the buffer has drained."""

import json
import threading
import time
import urllib.error
import urllib.request

import adbc_driver_flightsql.dbapi as flightsql

from conftest import Server, rows


def post(http, events):
    req = urllib.request.Request(f"http://{http}/v1/clicks", data=json.dumps(events).encode(), method="POST",
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def clicks(prefix, n):
    return [{"event_id": f"{prefix}-{i}", "ad_id": "bp", "user_id": f"u{i}", "timestamp": "2017-11-07T10:00:00Z"}
            for i in range(n)]


def test_a_full_buffer_refuses_with_503_and_a_retry_hint(tmp_path):
    s = Server(tmp_path / "lake", "--max-buffered-events", "5", "--max-request-events", "10",
               flush_interval="3s")
    try:
        first = {}
        t = threading.Thread(target=lambda: first.update(zip(("status", "headers", "body"),
                                                             post(s.http, clicks("a", 4)))))
        t.start()
        time.sleep(0.8)  # the first 4 events now wait in the buffer for the 3 s flush
        status, headers, body = post(s.http, clicks("b", 3))
        assert status == 503
        assert headers.get("retry-after") == "1"
        assert "ingest buffer full (4 events waiting for their commit, limit 5)" in body["error"]
        # A request bigger than the whole buffer could never be taken: it is
        # refused as too large (the smaller of the two limits), not told to retry.
        for n in (6, 11):
            status, headers, body = post(s.http, clicks("c", n))
            assert status == 400 and "retry-after" not in headers, (status, headers)
            assert f"at most 5 events, this one has {n}" in body["error"]
        t.join(timeout=30)
        assert first["status"] == 200 and first["body"]["accepted"] == 4
        status, _, body = post(s.http, clicks("b", 3))
        assert (status, body["accepted"]) == (200, 3)
        with flightsql.connect(s.uri, autocommit=True) as conn:
            assert rows(conn, "SELECT event_id FROM ad_clicks ORDER BY event_id") == [
                ("a-0",), ("a-1",), ("a-2",), ("a-3",), ("b-0",), ("b-1",), ("b-2",)]
        assert s.metrics()["clicklake_ingest_backpressure_refusals_total"] == 1
    finally:
        s.stop()
