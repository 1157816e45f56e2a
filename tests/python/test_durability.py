"""Durability and exactly-once across processes, with the real binary:

- SIGKILL of the server at random moments while the real click log is loaded
  over gRPC and synthetic clicks are posted over HTTP: every acknowledged
  event is counted exactly once afterwards.
- Two ingest nodes on one table, each event sent 2-3 times through different
  paths (gRPC loader on both nodes, HTTP on one): each counted once.

Expected per-day values were counted from data/talkingdata_train_sample.csv
with Python's csv module (independently of clicklake) and written here."""

import csv
import datetime
import hashlib
import json
import os
import random
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

import adbc_driver_flightsql.dbapi as flightsql

from conftest import DATA, Server, clicklake_bin, metrics, rows, start_role

KILLS = int(os.environ.get("CLICKLAKE_KILLS", "5"))

# The whole file: clicks and distinct users per day (data/README.md).
FULL_DAYS = [
    (datetime.date(2017, 11, 6), 5011),
    (datetime.date(2017, 11, 7), 32393),
    (datetime.date(2017, 11, 8), 34035),
    (datetime.date(2017, 11, 9), 28561),
]
# The first 5,000 rows: (day, clicks, distinct users).
FIRST_5000 = [
    (datetime.date(2017, 11, 6), 231, 224),
    (datetime.date(2017, 11, 7), 1621, 1455),
    (datetime.date(2017, 11, 8), 1745, 1576),
    (datetime.date(2017, 11, 9), 1403, 1265),
]


def post(http_addr, events):
    req = urllib.request.Request(
        f"http://{http_addr}/v1/clicks", data=json.dumps(events).encode(),
        headers={"content-type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def start_load(grpc_addr, *extra):
    return subprocess.Popen(
        [clicklake_bin(), "load", str(DATA), "--format", "talkingdata",
         "--endpoint", f"http://{grpc_addr}", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigkill_at_random_moments_loses_no_acknowledged_event(tmp_path):
    store = tmp_path / "lake"
    server = Server(store)
    grpc, http = server.grpc, server.http
    acked, stop = [], threading.Event()

    def poster():
        """Synthetic clicks on 2017-12-05 over HTTP, 50 per request; a batch
        counts as acknowledged only when the server answered 200."""
        n = 0
        while not stop.is_set():
            batch = [{"event_id": f"k-{n + i}", "ad_id": f"kill-{(n + i) % 7}", "user_id": f"ku-{(n + i) % 97}",
                      "timestamp": "2017-12-05T12:00:00Z"} for i in range(50)]
            try:
                reply = post(http, batch)
                assert reply["accepted"] == 50, reply
                acked.extend(e["event_id"] for e in batch)
                n += 50
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.1)  # the server is down: send the same batch again

    t = threading.Thread(target=poster, daemon=True)
    t.start()
    loader = start_load(grpc, "--batch-size", "2000", "--concurrency", "2")
    rng = random.Random(7)
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.2, 1.5))
            server.proc.send_signal(signal.SIGKILL)
            server.proc.wait(timeout=30)
            server = Server(store, grpc=grpc, http=http)
        out, err = loader.communicate(timeout=600)
        stop.set()
        t.join(timeout=60)
        assert loader.returncode == 0, f"loader failed after {KILLS} kills:\n{out}\n{err[-2000:]}"
        assert "100000 stored" in out, out
        server.wait_rolled_up()
        with flightsql.connect(server.uri, autocommit=True) as conn:
            stored = {r[0] for r in rows(conn, "SELECT DISTINCT event_id FROM ad_clicks WHERE event_id LIKE 'k-%'")}
            missing = set(acked) - stored
            assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:5]}"
            assert len(acked) > 0, "no HTTP click was acknowledged during the drill"
            assert rows(conn, "SELECT count(DISTINCT event_id) FROM ad_clicks WHERE event_id LIKE 'td-%'") == [(100000,)]
            # Every level counts each stored event id once.
            distinct = len(stored) + 100000
            for level in ["minute", "hour", "day", "month"]:
                assert rows(conn, f"SELECT sum(clicks) FROM ad_clicks_{level}") == [(distinct,)], level
            assert rows(conn, "SELECT CAST(window_start AS DATE) AS d, sum(clicks) FROM ad_clicks_day "
                              "WHERE window_start < '2017-11-10T00:00:00Z' GROUP BY window_start ORDER BY d") == FULL_DAYS
    finally:
        stop.set()
        if loader.poll() is None:
            loader.kill()
        server.stop()


def td_event_id(line_no: int, fields: list) -> str:
    """The documented id of a TalkingData row (docs/DATA_LAYOUT.md)."""
    h = hashlib.sha256(line_no.to_bytes(8, "little") + ",".join(fields).encode()).hexdigest()
    return "td-" + h[:32]


def test_two_ingest_nodes_and_resends_on_every_path_count_once(tmp_path):
    store = tmp_path / "lake"
    procs = []
    try:
        a, a_grpc, a_http = start_role(store, "ingest", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
                                       "--flush-interval", "200ms")
        b, b_grpc, b_http = start_role(store, "ingest", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
                                       "--flush-interval", "200ms")
        c, _, c_http = start_role(store, "compactor", "--http-addr", "127.0.0.1:0", "--rollup-interval", "200ms")
        q, q_grpc, _ = start_role(store, "query", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
        procs = [a, b, c, q]

        # Each of the first 5,000 rows through both nodes at once (gRPC), and
        # every fifth of them a third time over HTTP to node B.
        loads = [start_load(addr, "--limit", "5000", "--batch-size", "500") for addr in (a_grpc, b_grpc)]
        with open(DATA, newline="") as f:
            reader = csv.reader(f)
            next(reader)
            resend = []
            for i, r in enumerate(reader):
                if i >= 5000:
                    break
                if i % 5 == 0:
                    resend.append({"event_id": td_event_id(i + 2, r), "ad_id": f"{r[1]}-{r[4]}", "user_id": r[0],
                                   "timestamp": r[5].replace(" ", "T") + "Z", "device": r[2], "os": r[3]})
        for chunk in range(0, len(resend), 250):
            assert post(b_http, resend[chunk:chunk + 250])["accepted"] == len(resend[chunk:chunk + 250])
        for load in loads:
            out, err = load.communicate(timeout=300)
            assert load.returncode == 0, err[-2000:]
            assert "5000 stored" in out, out

        with flightsql.connect(f"grpc://{q_grpc}", autocommit=True) as conn:
            # Every copy is written except the copies of an id that met in one
            # flush of a node (node B's HTTP resends and its gRPC copies): those
            # are dropped before the write and counted.
            dropped = sum(metrics(h).get("clicklake_ingest_duplicates_dropped_total", 0) for h in (a_http, b_http))
            assert dropped <= 1000, dropped
            assert rows(conn, "SELECT count(*) FROM ad_clicks") == [(11000 - dropped,)]
            assert rows(conn, "SELECT count(DISTINCT event_id) FROM ad_clicks") == [(5000,)]
            # Wait until the compactor has rolled up the newest commit of either node.
            raw = max(metrics(h)["clicklake_ingest_table_version"] for h in (a_http, b_http))
            deadline = time.time() + 300
            while metrics(c_http).get("clicklake_compactor_rolled_up_version", -1) < raw:
                assert time.time() < deadline, "the compactor did not catch up"
                time.sleep(0.2)
            assert rows(conn, "SELECT CAST(window_start AS DATE) AS d, sum(clicks) FROM ad_clicks_day "
                              "GROUP BY window_start ORDER BY d") == [(d, n) for d, n, _ in FIRST_5000]
            assert rows(conn, "SELECT CAST(event_time AS DATE) AS d, count(DISTINCT user_id) FROM ad_clicks "
                              "GROUP BY 1 ORDER BY d") == [(d, users) for d, _, users in FIRST_5000]
            for level in ["minute", "hour", "day", "month"]:
                assert rows(conn, f"SELECT sum(clicks) FROM ad_clicks_{level}") == [(5000,)], level
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=60)
