"""Shared pieces of the failure drills (tests/python/test_drills.py,
tests/s3/test_s3_drills.py): single-role processes that can be killed and
restarted on the same ports, an HTTP click poster that remembers what was
acknowledged, a Flight SQL reader running during the drill, and the final
recount against values the test computed itself (the acknowledged ids, the
per-day counts of the real log counted with Python's csv module)."""

import collections
import datetime
import importlib.util
import json
import os
import select
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flightsql

# The end-to-end suite's conftest, by path: under tests/s3 another module is
# named `conftest`.
_spec = importlib.util.spec_from_file_location("clicklake_e2e_conftest",
                                               os.path.join(os.path.dirname(__file__), "conftest.py"))
_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_conftest)
DATA, clicklake_bin, metrics = _conftest.DATA, _conftest.clicklake_bin, _conftest.metrics
store_location, storage_options = _conftest.store_location, _conftest.storage_options

ROLE_FLAGS = {
    "ingest": ["--flush-interval", "200ms"],
    "compactor": ["--rollup-interval", "200ms"],
    "query": [],
}
LEVELS = ["minute", "hour", "day", "month"]


class Role:
    """One `clicklake ingest|compactor|query` process. `restart()` starts a
    new process on the addresses the first one was given by the OS."""

    def __init__(self, role: str, store: str, log_dir, *flags: str, env: dict = None):
        self.role, self.store, self.flags = role, store, list(flags)
        self.env = {**os.environ, **(env or {})}
        self.log_path = os.path.join(str(log_dir), f"{role}-{id(self):x}.log")
        self.grpc = None
        self.http = "127.0.0.1:0"
        if role != "compactor":
            self.grpc = "127.0.0.1:0"
        self.proc = None
        self.starts = 0
        self.start()

    def start(self, timeout: float = 120.0, attempts: int = 3):
        args = [clicklake_bin(), self.role, "--store", self.store, "--http-addr", self.http]
        if self.grpc is not None:
            args += ["--grpc-addr", self.grpc]
        args += ROLE_FLAGS[self.role] + self.flags
        last = ""
        for attempt in range(attempts):
            with open(self.log_path, "a") as log:
                log.write(f"\n===== start {self.starts + 1} (attempt {attempt + 1}) at {time.strftime('%H:%M:%S')}\n")
            log = open(self.log_path, "a")
            self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True, env=self.env)
            log.close()
            ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
            last = self.proc.stdout.readline() if ready else ""
            if "clicklake serving" in last:
                grpc, http = last.split("grpc=")[1].split()[0], last.split("http=")[1].split()[0]
                if self.grpc is not None:
                    self.grpc = grpc
                self.http = http
                self.starts += 1
                return
            self.proc.kill()
            self.proc.wait(30)
            time.sleep(1)
        raise AssertionError(f"{self.role} did not start after {attempts} attempts: {last!r}\n{self.log_tail()}")

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def restart(self):
        self.start()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)

    def metrics(self) -> dict:
        return metrics(self.http)

    def peak_rss_bytes(self) -> int:
        """VmHWM: the most resident memory the process has had so far."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM")

    def log_tail(self, n: int = 40) -> str:
        try:
            with open(self.log_path) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def log_grep(self, needle: str) -> list:
        try:
            with open(self.log_path) as f:
                return [line.rstrip() for line in f if needle in line]
        except OSError:
            return []


def post(http_addr: str, events: list, timeout: float = 30):
    """POST /v1/clicks; (status, body as JSON or text)."""
    req = urllib.request.Request(f"http://{http_addr}/v1/clicks", data=json.dumps(events).encode(),
                                 headers={"content-type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        text = e.read().decode(errors="replace")
        try:
            return e.code, json.loads(text)
        except ValueError:
            return e.code, text


def click(event_id: str, day: str, n: int) -> dict:
    return {"event_id": event_id, "ad_id": f"drill-{n % 7}", "user_id": f"du-{n % 97}",
            "timestamp": f"{day}T{n % 24:02d}:{n % 60:02d}:00Z"}


class Poster(threading.Thread):
    """Posts synthetic clicks (`<prefix>-<n>`, on `day`) in batches over HTTP
    to the given ingest nodes in turn. A batch counts as acknowledged only
    when the node answered 200 with every event accepted. With `resend` a
    batch that was not acknowledged is sent again (a producer's retry);
    without it every event is sent exactly once."""

    def __init__(self, http_addrs, prefix: str, day: str = "2017-12-05", batch: int = 50, resend: bool = True,
                 limit: int = None, timeout: float = 30, pause: float = 0.0):
        super().__init__(daemon=True, name=f"poster-{prefix}")
        self.addrs = list(http_addrs) if isinstance(http_addrs, (list, tuple)) else [http_addrs]
        self.prefix, self.day, self.batch, self.resend = prefix, day, batch, resend
        self.limit, self.timeout, self.pause = limit, timeout, pause
        self.acked, self.sent, self.unacked = [], set(), []
        self.outcomes = collections.Counter()
        self.first_errors = {}  # outcome -> first error body seen
        self.error_times = []
        self.stop_flag = threading.Event()

    def run(self):
        n, turn = 0, 0
        while not self.stop_flag.is_set() and (self.limit is None or n < self.limit):
            size = self.batch if self.limit is None else min(self.batch, self.limit - n)
            events = [click(f"{self.prefix}-{n + i}", self.day, n + i) for i in range(size)]
            self.sent.update(e["event_id"] for e in events)
            while True:
                addr = self.addrs[turn % len(self.addrs)]
                turn += 1
                try:
                    status, body = post(addr, events, self.timeout)
                except (urllib.error.URLError, ConnectionError, OSError) as e:
                    status, body = "connection", repr(e)
                ok = status == 200 and isinstance(body, dict) and body.get("accepted") == size
                self.outcomes[status if ok or status != 200 else "200-partial"] += 1
                if ok:
                    self.acked.extend(e["event_id"] for e in events)
                    break
                self.first_errors.setdefault(status, body)
                self.error_times.append(time.time())
                if not self.resend:
                    self.unacked.extend(e["event_id"] for e in events)
                    break
                if self.stop_flag.wait(0.2):
                    break
            n += size
            if self.pause:
                time.sleep(self.pause)

    def stop(self, timeout: float = 120):
        self.stop_flag.set()
        self.join(timeout)
        assert not self.is_alive(), "the HTTP poster did not stop"


class Reader(threading.Thread):
    """Runs Flight SQL queries against a query node during a drill. Errors
    while the node is down (or the store is) are counted, not raised. The
    raw table only grows, so the counts it sees must never go down."""

    SQL = ["SELECT count(*) FROM ad_clicks", "SELECT count(DISTINCT event_id) FROM ad_clicks",
           "SELECT coalesce(sum(clicks), 0) FROM ad_clicks_day"]

    def __init__(self, grpc_addr_fn, interval: float = 0.3):
        super().__init__(daemon=True, name="reader")
        self.addr_fn = grpc_addr_fn
        self.interval = interval
        self.ok = 0
        self.errors = collections.Counter()
        self.first_error = None
        self.last = {}
        self.regressions = []
        self.stop_flag = threading.Event()

    def run(self):
        conn = None
        i = 0
        while not self.stop_flag.is_set():
            sql = self.SQL[i % len(self.SQL)]
            i += 1
            try:
                if conn is None:
                    conn = connect(self.addr_fn(), timeout=20)
                with conn.cursor() as cur:
                    cur.execute(sql)
                    value = cur.fetchone()[0]
                self.ok += 1
                if value < self.last.get(sql, 0):
                    self.regressions.append((sql, self.last[sql], value))
                self.last[sql] = max(value, self.last.get(sql, 0))
            except Exception as e:  # the node or the store is down: count it, reconnect
                self.errors[type(e).__name__] += 1
                self.first_error = self.first_error or repr(e)[:300]
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:
                        pass
                    conn = None
            self.stop_flag.wait(self.interval)
        if conn is not None:
            conn.close()

    def stop(self):
        self.stop_flag.set()
        self.join(120)


def connect(grpc_addr: str, timeout: float = 120):
    opts = {adbc_driver_flightsql.DatabaseOptions.TIMEOUT_QUERY.value: str(timeout),
            adbc_driver_flightsql.DatabaseOptions.TIMEOUT_FETCH.value: str(timeout)}
    return flightsql.connect(f"grpc://{grpc_addr}", db_kwargs=opts, autocommit=True)


def start_load(grpc_addr: str, *extra: str):
    return subprocess.Popen(
        [clicklake_bin(), "load", str(DATA), "--format", "talkingdata",
         "--endpoint", f"http://{grpc_addr}", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def csv_rows(limit: int = None):
    """Data rows of the real log, with their 1-based file line numbers."""
    for i, r in enumerate(_conftest.csv_rows(limit)):
        yield i + 2, r


def csv_days(limit: int = None) -> collections.Counter:
    """Rows per UTC day of click_time in the first `limit` rows of the log,
    counted with the csv module (every row is its own event id)."""
    return collections.Counter(datetime.date.fromisoformat(r[5][:10]) for _, r in csv_rows(limit))


def wait_caught_up(ingests: list, compactor: Role, timeout: float = 300):
    """Wait until the compactor's rollups reflect the newest raw commit any
    ingest node made (the metrics conftest's wait_rolled_up uses)."""
    deadline = time.time() + timeout
    raw = done = None
    while time.time() < deadline:
        try:
            raw = max(i.metrics()["clicklake_ingest_table_version"] for i in ingests)
            done = compactor.metrics().get("clicklake_compactor_rolled_up_version")
        except OSError:
            pass
        else:
            if done is not None and done >= raw:
                return raw
        time.sleep(0.3)
    raise AssertionError(f"rollups did not catch up: raw version {raw}, rolled up {done}\n{compactor.log_tail()}")


def rows(conn, sql):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall()


def stored_ids(conn, prefix: str) -> set:
    return {r[0] for r in rows(conn, f"SELECT DISTINCT event_id FROM ad_clicks WHERE event_id LIKE '{prefix}-%'")}


def check_rollups(conn, expected_days: dict):
    """Every rollup level against `expected_days` (UTC date -> distinct
    events), which the test computed itself: the total, per day at the
    minute, hour and day levels, per month at the month level."""
    total = sum(expected_days.values())
    distinct = rows(conn, "SELECT count(DISTINCT event_id) FROM ad_clicks")[0][0]
    assert distinct == total, f"ad_clicks holds {distinct} distinct ids, expected {total}"
    months = collections.Counter()
    for d, n in expected_days.items():
        months[d.replace(day=1)] += n
    for level in LEVELS:
        assert rows(conn, f"SELECT sum(clicks) FROM ad_clicks_{level}") == [(total,)], level
        got = dict(rows(conn, f"SELECT CAST(window_start AS DATE) AS d, sum(clicks) FROM ad_clicks_{level} GROUP BY 1"))
        if level == "month":
            assert got == dict(months), f"{level}: {got} != {dict(months)}"
        else:
            per_day = collections.Counter()
            for d, n in got.items():
                per_day[d] += n
            assert per_day == collections.Counter(expected_days), f"{level}: {dict(per_day)} != {expected_days}"
