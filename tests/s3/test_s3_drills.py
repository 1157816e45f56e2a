"""Object-store failure drills against the Ceph RADOS Gateway that
scripts/test-s3.sh starts (it exports CLICKLAKE_RGW_DIR, AWS_* and
CLICKLAKE_TEST_S3). Each ends with an independent recount (docs/DRILLS.md):

a. the gateway is down for 30 s while the real log and HTTP clicks are
   loaded: backpressure is seen, nothing acknowledged is lost, and the same
   ingest, compactor and query processes carry on once it is back;
b. a slow store (a proxy adds 100-200 ms to every request): every
   acknowledged event counted once, peak memory bounded, throughput printed;
c. ambiguous commits (the proxy lets a Delta commit land and drops the
   reply): no event stored twice, none lost;
d. three ingest nodes and a compactor committing to the same tables at once:
   every event once, no data file referenced twice.

Expected values are the ids the test itself got acknowledged and per-day
counts of data/talkingdata_train_sample.csv made with Python's csv module."""

import datetime
import os
import signal
import subprocess
import threading
import time

from deltalake import DeltaTable

from drillkit import (Poster, Reader, Role, check_rollups, connect, csv_days, csv_rows, post, rows, start_load,
                      storage_options, store_location, stored_ids, wait_caught_up)
from faultproxy import FaultProxy, wait_http

POST_DAY = datetime.date(2017, 12, 5)
OUTAGE_S = float(os.environ.get("CLICKLAKE_DRILL_OUTAGE", "30"))
# The drills' processes measured 140-420 MiB of peak RSS (debug build, docs/DRILLS.md).
# 1 GiB leaves room for allocator noise while still catching a buffer that grows with
# the store's latency (the load below queues far more than 1 GiB of events if nothing
# holds it back).
PEAK_RSS_BOUND = 1 << 30


def rgw_dir() -> str:
    d = os.environ.get("CLICKLAKE_RGW_DIR")
    assert d and os.path.exists(f"{d}/rgw.pid"), "CLICKLAKE_RGW_DIR is not set: run under scripts/test-s3.sh"
    return d


def rgw_pid() -> int:
    with open(f"{rgw_dir()}/rgw.pid") as f:
        return int(f.read().strip())


def rgw_alive() -> bool:
    try:
        os.kill(rgw_pid(), 0)
    except OSError:
        return False
    with open(f"/proc/{rgw_pid()}/status") as f:
        return "zombie" not in f.read()


def stop_rgw():
    pid = rgw_pid()
    os.kill(pid, signal.SIGKILL)
    deadline = time.time() + 30
    while rgw_alive() and time.time() < deadline:
        time.sleep(0.05)
    assert not rgw_alive(), "radosgw did not die"


def start_rgw():
    """Start the gateway again exactly as scripts/ceph-rgw/start.sh does."""
    d = rgw_dir()
    with open(f"{d}/log/rgw.out", "a") as log:
        p = subprocess.Popen(["radosgw", "-c", f"{d}/ceph.conf", "-n", "client.rgw.a", "-f"],
                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    with open(f"{d}/rgw.pid", "w") as f:
        f.write(f"{p.pid}\n")
    wait_http(os.environ["AWS_ENDPOINT_URL"], timeout=120)


def test_object_store_down_for_30s_under_load(tmp_path):
    store = store_location(tmp_path / "lake")
    procs = []
    poster = reader = loader = None
    try:
        # A bound on waiting events well under what the load queues up in 30 s, so
        # backpressure (503 / RESOURCE_EXHAUSTED) shows instead of a growing buffer.
        ingest = Role("ingest", store, tmp_path, "--max-buffered-events", "20000")
        compactor = Role("compactor", store, tmp_path)
        query = Role("query", store, tmp_path)
        procs = [ingest, compactor, query]
        pids = [p.proc.pid for p in procs]
        poster = Poster(ingest.http, "out", day=POST_DAY.isoformat(), timeout=120)
        reader = Reader(lambda: query.grpc, interval=0.5)
        poster.start()
        reader.start()
        loader = start_load(ingest.grpc, "--limit", "40000", "--batch-size", "1000", "--concurrency", "4",
                            "--retry-for", "5min")
        time.sleep(3)
        assert poster.acked, f"nothing acknowledged before the outage: {poster.first_errors}"
        before = {"acked": len(poster.acked), "errors": len(poster.error_times), "queries_failed":
                  sum(reader.errors.values())}
        outage_start = time.time()
        stop_rgw()
        try:
            time.sleep(OUTAGE_S)
            during = {"errors": len(poster.error_times) - before["errors"],
                      "acked": len(poster.acked) - before["acked"],
                      "queries_failed": sum(reader.errors.values()) - before["queries_failed"],
                      "ingest": ingest.metrics(), "compactor": compactor.metrics()}
        finally:
            start_rgw()
        outage = time.time() - outage_start
        out, err = loader.communicate(timeout=600)
        assert loader.returncode == 0, f"the loader gave up:\n{out}\n{err[-3000:]}"
        assert "40000 stored" in out, out
        time.sleep(2)  # a few HTTP batches after the recovery
        poster.stop()
        acked_after = len(poster.acked) - before["acked"] - during["acked"]
        assert acked_after > 0, f"no HTTP click acknowledged after the store came back: {poster.first_errors}"

        # The same processes carried on.
        assert [p.proc.pid for p in procs] == pids and all(p.alive() for p in procs), \
            [(p.role, p.proc.returncode) for p in procs]
        m = ingest.metrics()
        refusals = m["clicklake_ingest_backpressure_refusals_total"]
        commit_errors = m["clicklake_ingest_commit_errors_total"]
        assert during["errors"] > 0 or refusals > 0 or commit_errors > 0, \
            f"no backpressure and no error seen during a {OUTAGE_S} s outage: {during}"
        wait_caught_up([ingest], compactor)
        reader.stop()
        with connect(query.grpc) as conn:
            posted = stored_ids(conn, "out")
            missing = set(poster.acked) - posted
            assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:5]}"
            assert posted <= poster.sent
            expected = csv_days(40000)
            expected[POST_DAY] += len(posted)
            check_rollups(conn, expected)
            raw_rows = rows(conn, "SELECT count(*) FROM ad_clicks")[0][0]
        assert reader.ok > 0 and not reader.regressions, (reader.ok, reader.regressions)
        print(f"\noutage {outage:.1f} s; HTTP outcomes {dict(poster.outcomes)}, first errors "
              f"{ {k: str(v)[:300] for k, v in poster.first_errors.items()} }; acked before/during/after "
              f"{before['acked']}/{during['acked']}/{acked_after}; backpressure refusals {refusals:.0f}, commit "
              f"errors {commit_errors:.0f}, rollup errors {m_get(compactor, 'clicklake_compactor_rollup_errors_total')}; "
              f"queries ok {reader.ok} failed {dict(reader.errors)} (during the outage "
              f"{during['queries_failed']}); raw rows {raw_rows}, distinct {40000 + len(posted)}\n"
              f"loader stderr tail: {err.strip().splitlines()[-3:] if err.strip() else ''}")
    finally:
        if not rgw_alive():
            start_rgw()
        for t in (poster, reader):
            if t is not None:
                t.stop_flag.set()
        if loader is not None and loader.poll() is None:
            loader.kill()
        for p in procs:
            p.stop()


def m_get(role: Role, name: str):
    try:
        return role.metrics().get(name)
    except OSError:
        return None


def test_slow_store_keeps_memory_bounded_and_counts_once(tmp_path):
    proxy = FaultProxy(os.environ["AWS_ENDPOINT_URL"], latency=(0.1, 0.2))
    proxy.start()
    store = store_location(tmp_path / "lake")
    procs = []
    poster = None
    try:
        slow = {"AWS_ENDPOINT_URL": proxy.url}
        ingest = Role("ingest", store, tmp_path, env=slow)
        compactor = Role("compactor", store, tmp_path, env=slow)
        query = Role("query", store, tmp_path)
        procs = [ingest, compactor, query]
        poster = Poster(ingest.http, "slow", day=POST_DAY.isoformat(), batch=200, timeout=120)
        started = time.time()
        poster.start()
        load = start_load(ingest.grpc, "--limit", "50000", "--batch-size", "2500", "--concurrency", "8",
                          "--retry-for", "5min")
        out, err = load.communicate(timeout=600)
        poster.stop()
        elapsed = time.time() - started
        assert load.returncode == 0 and "50000 stored" in out, out + err[-3000:]
        peak = {p.role: p.peak_rss_bytes() for p in procs}
        m = ingest.metrics()
        flushes = m["clicklake_ingest_flush_duration_seconds_count"]
        flush_mean = m["clicklake_ingest_flush_duration_seconds_sum"] / max(flushes, 1)
        t = time.time()
        wait_caught_up([ingest], compactor)
        catch_up = time.time() - t
        with connect(query.grpc) as conn:
            posted = stored_ids(conn, "slow")
            assert set(poster.acked) <= posted, f"{len(set(poster.acked) - posted)} acknowledged events lost"
            assert posted <= poster.sent
            expected = csv_days(50000)
            expected[POST_DAY] += len(posted)
            check_rollups(conn, expected)
        for role, rss in peak.items():
            assert rss < PEAK_RSS_BOUND, f"{role} peaked at {rss >> 20} MiB"
        events = 50000 + len(poster.acked)
        print(f"\nslow store (+100-200 ms per request, {proxy.stats['requests']} requests, "
              f"{proxy.stats['bytes_up'] >> 20} MiB up): {events} events acknowledged in {elapsed:.1f} s = "
              f"{events / elapsed:.0f} events/s; {flushes:.0f} flushes, mean {flush_mean:.2f} s; rollups caught up "
              f"{catch_up:.1f} s after the load; peak RSS MiB {({k: v >> 20 for k, v in peak.items()})}")
    finally:
        if poster is not None:
            poster.stop_flag.set()
        for p in procs:
            p.stop()
        proxy.stop()


def test_ambiguous_commit_stores_no_event_twice(tmp_path):
    proxy = FaultProxy(os.environ["AWS_ENDPOINT_URL"])
    proxy.start()
    store = store_location(tmp_path / "lake")
    procs = []
    try:
        ingest = Role("ingest", store, tmp_path, env={"AWS_ENDPOINT_URL": proxy.url})
        compactor = Role("compactor", store, tmp_path)
        query = Role("query", store, tmp_path)
        procs = [ingest, compactor, query]
        # The table exists and has a commit of ours; then the replies of the next
        # two landed commits of ad_clicks are dropped.
        first = Poster(ingest.http, "amb0", day=POST_DAY.isoformat(), resend=False, limit=100)
        first.run()
        assert len(first.acked) == 100, first.first_errors
        proxy.arm_drops(2)
        # Every event sent exactly once (no resend), one request at a time.
        poster = Poster(ingest.http, "amb", day=POST_DAY.isoformat(), batch=50, resend=False, limit=1000,
                        timeout=120)
        poster.run()
        assert len(proxy.dropped) == 2, f"the proxy dropped {proxy.dropped}; commits seen {proxy.commits[-10:]}"
        wait_caught_up([ingest], compactor)
        acked = set(first.acked) | set(poster.acked)
        sent = first.sent | poster.sent
        with connect(query.grpc) as conn:
            total = rows(conn, "SELECT count(*) FROM ad_clicks")[0][0]
            distinct = rows(conn, "SELECT count(DISTINCT event_id) FROM ad_clicks")[0][0]
            stored = stored_ids(conn, "amb") | stored_ids(conn, "amb0")
            twice = rows(conn, "SELECT count(*) FROM (SELECT event_id FROM ad_clicks GROUP BY event_id "
                               "HAVING count(*) > 1)")[0][0]
            summary = (f"commits whose reply was dropped: {[p.rsplit('/', 1)[1] for _, p, _ in proxy.dropped]}; "
                       f"HTTP outcomes {dict(poster.outcomes)}, first errors "
                       f"{ {k: str(v)[:300] for k, v in poster.first_errors.items()} }; sent {len(sent)}, "
                       f"acknowledged {len(acked)}; ad_clicks count(*) {total}, count(DISTINCT event_id) {distinct}, "
                       f"ids stored more than once {twice}; commit errors "
                       f"{ingest.metrics()['clicklake_ingest_commit_errors_total']:.0f}")
            print("\n" + summary)
            assert not acked - stored, f"{len(acked - stored)} acknowledged events lost; {summary}"
            assert stored <= sent
            assert total == distinct, f"events stored twice after an ambiguous commit; {summary}"
            expected = {POST_DAY: len(stored)}
            check_rollups(conn, expected)
    finally:
        for p in procs:
            p.stop()
        proxy.stop()


def test_three_ingest_nodes_and_a_compactor_commit_at_once(tmp_path):
    store = store_location(tmp_path / "lake")
    procs = []
    try:
        nodes = [Role("ingest", store, tmp_path) for _ in range(3)]
        compactor = Role("compactor", store, tmp_path)
        query = Role("query", store, tmp_path)
        procs = [*nodes, compactor, query]
        limit = 30000
        events = [{"event_id": f"m3-{line}", "ad_id": f"{r[1]}-{r[4]}", "user_id": r[0],
                   "timestamp": r[5].replace(" ", "T") + "Z", "device": r[2], "os": r[3],
                   "is_conversion": r[7] == "1"} for line, r in csv_rows(limit)]
        acked, failed = [], []
        lock = threading.Lock()

        def send(node: Role, part: list):
            for i in range(0, len(part), 250):
                chunk = part[i:i + 250]
                status, body = post(node.http, chunk, timeout=120)
                with lock:
                    if status == 200 and body["accepted"] == len(chunk):
                        acked.extend(e["event_id"] for e in chunk)
                    else:
                        failed.append((status, str(body)[:300]))

        # Each event once, to one of the three nodes, all three sending at once.
        threads = [threading.Thread(target=send, args=(n, events[k::3])) for k, n in enumerate(nodes)]
        started = time.time()
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
        elapsed = time.time() - started
        assert not failed, failed[:5]
        assert len(acked) == limit == len(set(acked))
        t = time.time()
        wait_caught_up(nodes, compactor)
        catch_up = time.time() - t
        t = time.time()
        with connect(query.grpc) as conn:
            total = rows(conn, "SELECT count(*) FROM ad_clicks")[0][0]
            distinct = rows(conn, "SELECT count(DISTINCT event_id) FROM ad_clicks")[0][0]
            assert (total, distinct) == (limit, limit)
            assert stored_ids(conn, "m3") == set(acked)
            check_rollups(conn, csv_days(limit))
        recount = time.time() - t
        t = time.time()
        opts = storage_options()
        versions = {}
        for table in ["ad_clicks", "ad_clicks_minute", "ad_clicks_hour", "ad_clicks_day", "ad_clicks_month"]:
            dt = DeltaTable(f"{store}/{table}", storage_options=opts)
            paths = dt.get_add_actions(flatten=True).column("path").to_pylist()
            assert len(paths) == len(set(paths)), f"{table}: a data file is referenced twice"
            versions[table] = dt.version()
        raw = DeltaTable(f"{store}/ad_clicks", storage_options=opts).to_pyarrow_table(columns=["event_id"])
        assert raw.num_rows == limit and set(raw.column("event_id").to_pylist()) == set(acked)
        per_node = [n.metrics()["clicklake_ingest_events_accepted_total"] for n in nodes]
        conflicts = sum(n.metrics()["clicklake_ingest_commit_errors_total"] for n in nodes)
        print(f"\n{limit} events over 3 nodes in {elapsed:.1f} s (accepted per node {per_node}); table versions "
              f"{versions}; commit errors {conflicts:.0f}; rollups caught up in {catch_up:.1f} s, recount "
              f"{recount:.1f} s, deltalake checks {time.time() - t:.1f} s")
    finally:
        for p in procs:
            p.stop()
