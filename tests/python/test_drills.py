"""Failure drills with the real binary, each ending with an independent
recount (docs/DRILLS.md):

- SIGKILL of the ingest, compactor and query processes (separate roles) at
  random moments while the real click log is loaded over gRPC, clicks are
  posted over HTTP and a reader queries the query node; each killed process
  is restarted on the same ports. Runs on local files and, under
  scripts/test-s3.sh, on S3. CLICKLAKE_DRILL_KILLS sets the number of kills
  (default 10), CLICKLAKE_DRILL_SEED the random seed (default: the clock).
- The local disk fills up under the ingest: requests are refused with a
  clear error, no process dies, and once space is freed the same requests
  are acknowledged. Always on a small tmpfs (it needs root to mount one),
  also in the S3 run.

Expected values are the ids the test itself got acknowledged and per-day
counts of data/talkingdata_train_sample.csv made with Python's csv module."""

import collections
import datetime
import errno
import os
import random
import subprocess
import time
import urllib.request

from deltalake import DeltaTable

from drillkit import (DATA, Poster, Reader, Role, check_rollups, clicklake_bin, connect, csv_days, post, rows,
                      start_load, store_location, stored_ids, wait_caught_up)

KILLS = int(os.environ.get("CLICKLAKE_DRILL_KILLS", "10"))
SEED = int(os.environ.get("CLICKLAKE_DRILL_SEED", str(int(time.time()))))
ROLES = ["ingest", "compactor", "query"]
POST_DAY = datetime.date(2017, 12, 5)


def kill_plan(rng: random.Random, kills: int) -> list:
    """`kills` victims picked at random, each role at least once."""
    assert kills >= len(ROLES), f"CLICKLAKE_DRILL_KILLS={kills}: at least one kill per role"
    plan = ROLES + [rng.choice(ROLES) for _ in range(kills - len(ROLES))]
    rng.shuffle(plan)
    return plan


def test_sigkill_of_ingest_compactor_and_query_under_load(tmp_path):
    rng = random.Random(SEED)
    plan = kill_plan(rng, KILLS)
    store = store_location(tmp_path / "lake")
    procs = {}
    poster = reader = loader = None
    started = time.time()
    try:
        procs["ingest"] = Role("ingest", store, tmp_path)
        procs["compactor"] = Role("compactor", store, tmp_path)
        procs["query"] = Role("query", store, tmp_path)
        ingest, compactor, query = procs["ingest"], procs["compactor"], procs["query"]
        poster = Poster(ingest.http, "rk", day=POST_DAY.isoformat())
        reader = Reader(lambda: query.grpc)
        poster.start()
        reader.start()
        load_args = ("--batch-size", "2000", "--concurrency", "2", "--retry-for", "10min")
        loader = start_load(ingest.grpc, *load_args)
        loads = []
        kills = collections.Counter()
        restart_seconds = []
        for victim in plan:
            time.sleep(rng.uniform(0.2, 1.5))
            procs[victim].kill()
            kills[victim] += 1
            t = time.time()
            procs[victim].restart()
            restart_seconds.append(time.time() - t)
            if loader.poll() is not None:
                # The log is loaded: load it again, so every kill happens under load
                # (a second copy of the file changes no count).
                loads.append(loader.communicate() + (loader.returncode,))
                loader = start_load(ingest.grpc, *load_args)
        out, err = loader.communicate(timeout=900)
        loads.append((out, err, loader.returncode))
        poster.stop()
        reader.stop()
        drill_seconds = time.time() - started
        for out, err, code in loads:
            assert code == 0, f"a loader failed during the drill:\n{out}\n{err[-3000:]}"
            assert "100000 stored" in out, out
        assert set(kills) == set(ROLES), kills

        wait_caught_up([ingest], compactor)
        with connect(query.grpc) as conn:
            posted = stored_ids(conn, "rk")
            acked = set(poster.acked)
            assert acked, "no HTTP click was acknowledged during the drill"
            missing = acked - posted
            assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:5]}"
            assert posted <= poster.sent, f"ids stored that were never sent: {sorted(posted - poster.sent)[:5]}"
            loaded = rows(conn, "SELECT count(DISTINCT event_id) FROM ad_clicks WHERE event_id LIKE 'td-%'")[0][0]
            assert loaded == 100000
            expected = csv_days()
            expected[POST_DAY] += len(posted)
            check_rollups(conn, expected)
            raw_rows = rows(conn, "SELECT count(*) FROM ad_clicks")[0][0]
        assert reader.ok > 0, f"no query succeeded during the drill: {reader.first_error}"
        assert not reader.regressions, f"a count went down between two queries: {reader.regressions[:3]}"
        print(f"\nseed {SEED}: {len(plan)} kills {dict(kills)} in {drill_seconds:.0f} s; {len(loads)} loads of the "
              f"log; {len(acked)} HTTP clicks acknowledged, outcomes {dict(poster.outcomes)}; "
              f"raw rows {raw_rows}, distinct {loaded + len(posted)}; queries ok {reader.ok}, "
              f"failed {dict(reader.errors)}; restart max {max(restart_seconds):.1f} s; "
              f"starts {[(r.role, r.starts) for r in procs.values()]}")
    finally:
        for t in (poster, reader):
            if t is not None:
                t.stop_flag.set()
        if loader is not None and loader.poll() is None:
            loader.kill()
        for p in procs.values():
            p.stop()


def fill(path: str) -> int:
    """Write a file until the file system is full; returns its size."""
    size = 0
    with open(path, "wb", buffering=0) as f:
        for chunk in (1 << 20, 1 << 12, 1):
            block = b"\0" * chunk
            while True:
                try:
                    size += f.write(block)
                except OSError as e:
                    assert e.errno == errno.ENOSPC, e
                    break
    return size


def test_disk_full_refuses_with_a_clear_error_and_recovers(tmp_path):
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mnt)], check=True)
    procs = []
    try:
        # A local store on the small disk, also in the S3 run.
        store = str(mnt / "lake")
        ingest = Role("ingest", store, tmp_path)
        compactor = Role("compactor", store, tmp_path)
        query = Role("query", store, tmp_path)
        procs = [ingest, compactor, query]
        sent, acked = set(), set()

        def send(batch: list):
            sent.update(e["event_id"] for e in batch)
            status, body = post(ingest.http, batch, timeout=120)
            if status == 200 and body["accepted"] == len(batch):
                acked.update(e["event_id"] for e in batch)
            return status, body

        def batch(n0: int, n: int = 50) -> list:
            return [{"event_id": f"df-{i}", "ad_id": f"df-{i % 5}", "user_id": f"du-{i % 31}",
                     "timestamp": f"{POST_DAY}T10:{i % 60:02d}:00Z"} for i in range(n0, n0 + n)]

        for k in range(5):
            assert send(batch(50 * k))[0] == 200
        wait_caught_up([ingest], compactor)

        filler = mnt / "filler"
        filled = fill(str(filler))
        st = os.statvfs(mnt)
        assert st.f_bavail * st.f_frsize < 64 * 1024, "the disk is not full"

        t = time.time()
        status, body = send(batch(250))
        refused_after = time.time() - t
        assert status == 503, (status, body)
        error = body["error"] if isinstance(body, dict) else body
        assert "No space left on device" in error, error
        # gRPC: the loader gives up after its retry time and says why.
        out = subprocess.run([*start_load_args(ingest.grpc), "--limit", "500", "--retry-for", "2s"],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode != 0, out.stdout
        grpc_error = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.stdout
        # Nothing died; reads still work; the writer counted the failures.
        assert all(p.alive() for p in procs), [(p.role, p.proc.returncode, p.log_tail()) for p in procs]
        with urllib.request.urlopen(f"http://{ingest.http}/health", timeout=10) as r:
            assert r.read() == b"ok\n"
        with connect(query.grpc) as conn:
            assert rows(conn, "SELECT count(DISTINCT event_id) FROM ad_clicks")[0][0] == 250
        commit_errors = ingest.metrics()["clicklake_ingest_commit_errors_total"]
        assert commit_errors >= 5

        filler.unlink()
        status, body = send(batch(250))  # the refused batch again
        assert status == 200, (status, body)
        for k in range(6, 10):
            assert send(batch(50 * k))[0] == 200
        load = subprocess.run([*start_load_args(ingest.grpc), "--limit", "2000", "--batch-size", "500"],
                              capture_output=True, text=True, timeout=300)
        assert load.returncode == 0 and "2000 stored" in load.stdout, load.stdout + load.stderr[-2000:]
        assert all(p.alive() for p in procs)

        wait_caught_up([ingest], compactor)
        with connect(query.grpc) as conn:
            stored = stored_ids(conn, "df")
            assert stored == acked == sent, (len(stored), len(acked), len(sent))
            expected = csv_days(2000)
            expected[POST_DAY] += len(acked)
            check_rollups(conn, expected)
            raw_rows = rows(conn, "SELECT count(*) FROM ad_clicks")[0][0]
        # Another reader sees the same table: every file the log references is whole.
        raw = DeltaTable(f"{store}/ad_clicks")
        table = raw.to_pyarrow_table(columns=["event_id"])
        assert table.num_rows == raw_rows
        assert {e for e in table.column("event_id").to_pylist() if e.startswith("df-")} == acked
        paths = raw.get_add_actions(flatten=True).column("path").to_pylist()
        assert len(paths) == len(set(paths))
        for level in ["minute", "hour", "day", "month"]:
            DeltaTable(f"{store}/ad_clicks_{level}").to_pyarrow_table()
        print(f"\nfiller {filled >> 20} MiB; HTTP refused after {refused_after:.1f} s with 503: {error!r}; "
              f"loader: {grpc_error!r}; commit errors {commit_errors:.0f}; {len(acked)} acknowledged after the "
              f"space was freed")
    finally:
        for p in procs:
            p.stop()
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def start_load_args(grpc_addr: str) -> list:
    return [clicklake_bin(), "load", str(DATA), "--format", "talkingdata", "--endpoint", f"http://{grpc_addr}"]
