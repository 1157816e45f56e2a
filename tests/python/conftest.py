"""Fixtures: a real `clicklake serve` process on 127.0.0.1 ports chosen by the
OS, over a temporary local store, fed a slice of the real TalkingData log by
`clicklake load`."""

import hashlib
import os
import pathlib
import re
import subprocess
import time
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DATA = ROOT / "data" / "talkingdata_train_sample.csv"


def clicklake_bin() -> str:
    path = os.environ.get("CLICKLAKE_BIN")
    if not path:
        target = os.environ.get("CARGO_TARGET_DIR") or os.path.expanduser("~/.cache/clicklake-target")
        path = os.path.join(target, "debug", "clicklake")
    if not os.path.exists(path):
        raise RuntimeError(f"clicklake binary not found at {path}; run `make build` or set CLICKLAKE_BIN")
    return path


def csv_rows(n=None):
    """The data rows of the real click log (header skipped), the first `n` of
    them when given: ip, app, device, os, channel, click_time,
    attributed_time, is_attributed. For expected values counted apart from
    clicklake."""
    import csv
    with open(DATA, newline="") as f:
        reader = csv.reader(f)
        next(reader)
        for i, row in enumerate(reader):
            if n is not None and i >= n:
                return
            yield row


def store_location(store: pathlib.Path) -> str:
    """Where a test store lives: the local path, or, when the suite runs on
    S3 (CLICKLAKE_TEST_S3=s3://bucket), a prefix of that bucket named after it."""
    s3 = os.environ.get("CLICKLAKE_TEST_S3")
    if not s3:
        return str(store)
    return f"{s3.rstrip('/')}/{hashlib.sha1(str(store).encode()).hexdigest()[:16]}"


def start_role(store, role, *flags):
    """Start one `clicklake ROLE` process on `store`: (process, grpc address, http address)."""
    store.parent.mkdir(parents=True, exist_ok=True)
    log = open(store.parent / f"{role}-{time.time_ns()}.log", "w")
    proc = subprocess.Popen([clicklake_bin(), role, "--store", store_location(store), *flags],
                            stdout=subprocess.PIPE, stderr=log, text=True)
    line = proc.stdout.readline()
    if "clicklake serving" not in line:
        proc.kill()
        raise AssertionError(f"{role} did not start: {line!r}; see {log.name}")
    grpc, http = line.split("grpc=")[1].split()[0], line.split("http=")[1].split()[0]
    return proc, grpc, http


def metrics(http_addr: str) -> dict:
    """A process's Prometheus metrics, name (with labels) -> value."""
    with urllib.request.urlopen(f"http://{http_addr}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


class Server:
    def __init__(self, store: pathlib.Path, *flags: str, grpc: str = "127.0.0.1:0", http: str = "127.0.0.1:0",
                 flush_interval: str = "200ms"):
        store.parent.mkdir(parents=True, exist_ok=True)
        self.store = store_location(store)
        self.proc = subprocess.Popen(
            [clicklake_bin(), "serve", "--store", store_location(store),
             "--grpc-addr", grpc, "--http-addr", http,
             "--flush-interval", flush_interval, "--rollup-interval", "200ms", *flags],
            stdout=subprocess.PIPE, stderr=open(store.parent / "serve.log", "a"), text=True,
        )
        line = self.proc.stdout.readline()
        m = re.search(r"grpc=(\S+) http=(\S+)", line)
        if not m:
            self.proc.kill()
            raise RuntimeError(f"clicklake serve did not start: {line!r}; see {store.parent / 'serve.log'}")
        self.grpc = m.group(1)
        self.http = m.group(2)
        self.uri = f"grpc://{self.grpc}"

    def load(self, rows: int) -> str:
        out = subprocess.run(
            [clicklake_bin(), "load", str(DATA), "--format", "talkingdata",
             "--endpoint", f"http://{self.grpc}", "--limit", str(rows), "--batch-size", "1000"],
            check=True, capture_output=True, text=True, timeout=300,
        )
        return out.stdout

    def metrics(self) -> dict:
        return metrics(self.http)

    def wait_rolled_up(self, timeout: float = 300.0):
        """Wait until the compactor has rolled up the raw table's newest
        version (ingest commits and rewrites such as optimize's alike)."""
        from deltalake import DeltaTable
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = self.metrics()
            raw = m.get("clicklake_ingest_table_version")
            if raw is not None:
                raw = max(raw, DeltaTable(f"{self.store}/ad_clicks", storage_options=storage_options()).version())
                if m.get("clicklake_compactor_rolled_up_version", -1) >= raw:
                    return
            time.sleep(0.2)
        raise AssertionError(f"rollups did not catch up: {self.metrics()}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """A server holding the first 3,000 rows of the real click log, rolled up."""
    store = tmp_path_factory.mktemp("clicklake") / "lake"
    s = Server(store)
    try:
        summary = s.load(3000)
        assert "3000 stored" in summary, summary
        s.wait_rolled_up()
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="session")
def conn(server):
    import adbc_driver_flightsql.dbapi as flightsql
    with flightsql.connect(server.uri, autocommit=True) as conn:
        yield conn


def rows(conn, sql, parameters=None):
    with conn.cursor() as cur:
        cur.execute(sql, parameters)
        return cur.fetchall()


def wait_for(conn, sql: str, expected, timeout: float = 120.0):
    """Poll a one-value query until it returns `expected`."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        with conn.cursor() as cur:
            cur.execute(sql)
            last = cur.fetchone()[0]
        if last == expected:
            return
        time.sleep(0.2)
    raise AssertionError(f"{sql} returned {last!r}, waited for {expected!r}")


def flight_command(message: str, fields: dict = None) -> bytes:
    """Any(<Flight SQL message>) in protobuf, written out by hand: `fields`
    maps field numbers to string values."""
    def field(number: int, payload: bytes) -> bytes:
        length, out = len(payload), bytearray()
        while True:
            byte = length & 0x7F
            length >>= 7
            out.append(byte | (0x80 if length else 0))
            if not length:
                break
        return bytes([(number << 3) | 2]) + bytes(out) + payload
    inner = b"".join(field(n, v.encode()) for n, v in (fields or {}).items())
    return field(1, f"type.googleapis.com/arrow.flight.protocol.sql.{message}".encode()) + field(2, inner)


def storage_options() -> dict:
    """Object-store options for readers of the test stores (empty on local files)."""
    if not os.environ.get("CLICKLAKE_TEST_S3"):
        return {}
    keys = ["AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION",
            "AWS_ALLOW_HTTP", "AWS_VIRTUAL_HOSTED_STYLE_REQUEST"]
    return {k: os.environ[k] for k in keys if k in os.environ}
