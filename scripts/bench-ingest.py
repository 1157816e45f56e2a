#!/usr/bin/env python3
"""The ingest benchmark (`make bench-ingest`).

For each ingest path (Arrow Flight DoPut, gRPC client stream, gRPC batches,
HTTP NDJSON, unary gRPC) it starts a fresh `clicklake ingest` node on a new
local store (ports 127.0.0.1:0, nothing else running), drives it with
`clicklake gen --send PATH --json`:

  1. probes: short runs, one per concurrency candidate; the best is kept;
  2. the max run: as fast as acks come back, sized to last about 20 s;
  3. the rate run: `--rate` = 80% of the max run's events/s, for ack latency
     under a load the node sustains.

Probes run on a node of their own; the max and rate runs share a second
fresh node, whose peak RSS (VmHWM) is read before it stops. After every gen
run the node's /metrics are compared with gen's report: the accepted and
flushed events counted by the node must equal the events gen saw
acknowledged, and its rejections gen's rejections; any difference stops the
benchmark with exit status 1.

It prints a table and rewrites the "## Ingest" section of docs/BENCHMARKS.md
(not with --quick, a smoke run, whose page goes to the work directory).
Python 3 standard library only.
"""

import argparse
import datetime
import json
import math
import os
import re
import resource
import select
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(REPO, "docs", "BENCHMARKS.md")
GIB = 1 << 30
MIB = 1 << 20

# Per path: events per request, the concurrency candidates the probes
# compare, the first probe's size, the --quick size, and the target.
PATHS = {
    "flight": dict(batch=50_000, concurrency=[2, 4, 8], probe_events=300_000, quick_events=150_000,
                   target=1_000_000, unit="events/s", target_text="Arrow Flight bulk ≥ 1,000,000 events/s"),
    "stream": dict(batch=1_000, concurrency=[8, 32], probe_events=200_000, quick_events=40_000,
                   target=500_000, unit="events/s",
                   target_text="gRPC batches of 1,000 ≥ 500,000 events/s (on one client stream per worker)"),
    "batch": dict(batch=1_000, concurrency=[64, 256], probe_events=200_000, quick_events=40_000,
                  target=500_000, unit="events/s", target_text="gRPC batches of 1,000 ≥ 500,000 events/s"),
    "http": dict(batch=1_000, concurrency=[32, 128], probe_events=100_000, quick_events=20_000,
                 target=200_000, unit="events/s", target_text="HTTP NDJSON ≥ 200,000 events/s"),
    "unary": dict(batch=1, concurrency=[256, 1024, 2048], probe_events=15_000, quick_events=4_000,
                  target=30_000, unit="requests/s", target_text="unary gRPC ≥ 30,000 requests/s"),
}
ORDER = ["flight", "stream", "batch", "http", "unary"]
RUN_SECONDS = 20          # what a max or rate run aims at (15-30 s)
PROBE_SECONDS = 5         # what a probe aims at
RATE_SHARE = 0.8          # the rate run's share of the measured max
ACK_P99_TARGET_MS = 1500  # at RATE_SHARE of max
RSS_TARGET = GIB
GEN_TIMEOUT = 600         # a gen run longer than this is a hang


class BenchError(Exception):
    pass


# ---------------------------------------------------------------- metrics

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> list:
    """Prometheus text format -> [(name, {label: value}, value)]."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if m:
            out.append((m.group(1), dict(LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return out


def total(samples, name: str, **labels) -> float:
    """Sum of a metric over the label sets that match `labels`."""
    return sum(v for n, l, v in samples if n == name and all(l.get(k) == x for k, x in labels.items()))


def histogram(samples, name: str, **labels) -> dict:
    buckets = {}
    for n, l, v in samples:
        if n == name + "_bucket" and all(l.get(k) == x for k, x in labels.items()):
            le = math.inf if l["le"] == "+Inf" else float(l["le"])
            buckets[le] = buckets.get(le, 0.0) + v
    return {"buckets": buckets, "sum": total(samples, name + "_sum", **labels),
            "count": total(samples, name + "_count", **labels)}


def hist_delta(after: dict, before: dict) -> dict:
    return {"buckets": {le: c - before["buckets"].get(le, 0.0) for le, c in after["buckets"].items()},
            "sum": after["sum"] - before["sum"], "count": after["count"] - before["count"]}


def quantile(h: dict, q: float):
    """Like PromQL histogram_quantile: linear within the bucket. Returns
    (seconds, overflow) with overflow set when the rank is past the last
    finite bucket (the value is then that bucket's bound, a lower bound)."""
    items = sorted(h["buckets"].items())
    if not items or items[-1][1] <= 0:
        return None, False
    rank = q * items[-1][1]
    lower, below = 0.0, 0.0
    for le, cum in items:
        if cum >= rank:
            if le == math.inf:
                return lower, True
            return lower + (le - lower) * (rank - below) / max(cum - below, 1e-12), False
        lower, below = le, cum
    return lower, True


# ---------------------------------------------------------------- processes

def proc_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status(pid: int, key: str) -> int:
    """A /proc/PID/status memory line (VmHWM, VmRSS) in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise BenchError(f"no {key} in /proc/{pid}/status")


class Node:
    """One `clicklake ingest` process on a fresh local store."""

    def __init__(self, binary: str, workdir: str, name: str):
        self.name = name
        self.store = os.path.join(workdir, f"store-{name}")
        self.log_path = os.path.join(workdir, f"node-{name}.log")
        self.args = [binary, "ingest", "--store", self.store,
                     "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"]
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=log, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 120)
        line = self.proc.stdout.readline() if ready else ""
        m = re.search(r"clicklake serving grpc=(\S+) http=(\S+)", line)
        if not m:
            self.stop()
            raise BenchError(f"the ingest node did not start ({shlex.join(self.args)}): {line!r}\n{self.log_tail()}")
        self.grpc, self.http = m.group(1), m.group(2)

    def metrics(self) -> list:
        with urllib.request.urlopen(f"http://{self.http}/metrics", timeout=30) as r:
            return parse_metrics(r.read().decode())

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.proc.pid)

    def peak_rss(self) -> int:
        return proc_status(self.proc.pid, "VmHWM")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self):
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self.proc.stdout.close()

    def store_files(self) -> dict:
        """Parquet files and commits in the raw table."""
        parquet = commits = 0
        for root, _, files in os.walk(self.store):
            for f in files:
                if f.endswith(".parquet") and "_delta_log" not in root:
                    parquet += 1
                elif root.endswith("_delta_log") and re.fullmatch(r"\d{20}\.json", f):
                    commits += 1
        return {"parquet_files": parquet, "commits": commits}

    def log_tail(self, n: int = 30) -> str:
        try:
            with open(self.log_path) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def gen_command(binary, node, path, events, batch, concurrency, seed, rate=0):
    cmd = [binary, "gen", "--send", path, "--events", str(events), "--json", "--seed", str(seed),
           "--concurrency", str(concurrency),
           "--endpoint", f"http://{node.grpc}", "--http-endpoint", f"http://{node.http}"]
    if path != "unary":
        cmd += ["--batch-size", str(batch)]
    if rate:
        cmd += ["--rate", str(rate)]
    return cmd


def run_gen(binary, node, path, events, batch, concurrency, seed, rate=0) -> dict:
    """One gen run, its report, and what the node's metrics say about it."""
    cmd = gen_command(binary, node, path, events, batch, concurrency, seed, rate)
    shown = shlex.join(["clicklake"] + cmd[1:])
    before = node.metrics()
    cpu_node, cpu_gen, wall = node.cpu_seconds(), children_cpu(), time.monotonic()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=GEN_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"gen hung (no end after {GEN_TIMEOUT} s): {shown}\n"
                         f"stderr: {(e.stderr or b'')[-2000:]!r}\n"
                         f"node buffered events: {total(node.metrics(), 'clicklake_ingest_buffered_events')}")
    wall = time.monotonic() - wall
    cpu_gen = children_cpu() - cpu_gen
    if not node.alive():
        raise BenchError(f"the ingest node died during {shown}\n{node.log_tail()}")
    cpu_node = node.cpu_seconds() - cpu_node
    after = node.metrics()
    if done.returncode != 0:
        raise BenchError(f"gen failed (exit {done.returncode}): {shown}\n{done.stderr[-3000:]}")
    lines = [l for l in done.stdout.splitlines() if l.startswith("{")]
    if not lines:
        raise BenchError(f"gen printed no JSON report: {shown}\nstdout: {done.stdout[-2000:]!r}\n"
                         f"stderr: {done.stderr[-2000:]}")
    report = json.loads(lines[-1])

    def delta(name, **labels):
        return total(after, name, **labels) - total(before, name, **labels)

    label = {"unary": "grpc_unary", "batch": "grpc_batch", "stream": "grpc_stream"}.get(path, path)
    ack = hist_delta(histogram(after, "clicklake_ingest_ack_duration_seconds", path=label),
                     histogram(before, "clicklake_ingest_ack_duration_seconds", path=label))
    flush = hist_delta(histogram(after, "clicklake_ingest_flush_duration_seconds"),
                       histogram(before, "clicklake_ingest_flush_duration_seconds"))
    flush_events = hist_delta(histogram(after, "clicklake_ingest_flush_events"),
                              histogram(before, "clicklake_ingest_flush_events"))
    server = {
        "accepted": delta("clicklake_ingest_events_accepted_total"),
        "rejected": delta("clicklake_ingest_events_rejected_total"),
        "flushed": delta("clicklake_ingest_flushed_events_total"),
        "duplicates_dropped": delta("clicklake_ingest_duplicates_dropped_total"),
        "commit_errors": delta("clicklake_ingest_commit_errors_total"),
        "backpressure_refusals": delta("clicklake_ingest_backpressure_refusals_total"),
        "requests": delta("clicklake_ingest_requests_total", path=label),
        "received_bytes": delta("clicklake_ingest_received_bytes_total", path=label),
        "ack_p50_s": quantile(ack, 0.5), "ack_p99_s": quantile(ack, 0.99),
        "flushes": flush["count"], "flush_seconds": flush["sum"],
        "flush_p99_s": quantile(flush, 0.99),
        "events_per_flush": flush_events["sum"] / flush_events["count"] if flush_events["count"] else 0.0,
    }
    run = {"command": shown, "events_arg": events, "concurrency": concurrency, "batch": batch, "rate": rate,
           "report": report, "wall_seconds": wall, "node_cpu_seconds": cpu_node, "gen_cpu_seconds": cpu_gen,
           "server": server}
    check(run, path)
    return run


def check(run: dict, path: str):
    """The node's counters must agree with gen's report, exactly."""
    r, s, problems = run["report"], run["server"], []
    acked = r["events"]  # gen sums the accepted counts of its acknowledged requests
    if s["accepted"] != acked:
        problems.append(f"/metrics clicklake_ingest_events_accepted_total rose by {s['accepted']:.0f}, "
                        f"gen reports {acked} acked ({r['rejected']} rejected)")
    if s["rejected"] != r["rejected"]:
        problems.append(f"/metrics clicklake_ingest_events_rejected_total rose by {s['rejected']:.0f}, "
                        f"gen reports {r['rejected']} rejected")
    if s["flushed"] != s["accepted"]:
        problems.append(f"/metrics flushed {s['flushed']:.0f} events but accepted {s['accepted']:.0f}")
    if acked + r["rejected"] < run["events_arg"]:
        problems.append(f"gen was asked for {run['events_arg']} events (duplicates come on top) "
                        f"but reports only {acked} acked + {r['rejected']} rejected")
    if path == "unary" and r["requests"] != acked + r["rejected"]:
        problems.append(f"unary: {r['requests']} requests for {acked + r['rejected']} events")
    if problems:
        raise BenchError("counts disagree for `" + run["command"] + "`:\n  " + "\n  ".join(problems))


# ---------------------------------------------------------------- the benchmark

def rounded(n: float, batch: int) -> int:
    step = max(batch, 1000)
    return max(step, int(round(n / step)) * step)


def bench_path(binary, workdir, path, quick, log) -> dict:
    cfg = PATHS[path]
    batch = cfg["batch"]
    result = {"path": path, "batch": batch, "probes": []}

    # 1. Probes: which concurrency gives the most events/s.
    node = Node(binary, workdir, f"{path}-probe")
    try:
        for i, conc in enumerate(cfg["concurrency"]):
            events = cfg["quick_events"] // 2 if quick else cfg["probe_events"]
            run = run_gen(binary, node, path, events, batch, conc, seed=100 + i)
            secs = run["report"]["seconds"]
            if not quick and secs < PROBE_SECONDS * 0.6:
                # Too short to tell: once more, sized from what it reached.
                events = rounded(run["report"]["events_per_second"] * PROBE_SECONDS, batch)
                run = run_gen(binary, node, path, events, batch, conc, seed=200 + i)
            rep = run["report"]
            result["probes"].append({"concurrency": conc, "events": rep["events"], "seconds": rep["seconds"],
                                     "events_per_second": rep["events_per_second"],
                                     "ack_p99_ms": rep["ack_p99_ms"]})
            log(f"  probe --concurrency {conc}: {rep['events']:,} events in {rep['seconds']:.1f} s = "
                f"{rep['events_per_second']:,.0f} events/s")
    finally:
        node.stop()
        shutil.rmtree(node.store, ignore_errors=True)
    best = max(result["probes"], key=lambda p: p["events_per_second"])
    conc = result["concurrency"] = best["concurrency"]

    # 2 and 3. The max run and the rate run, on a fresh node.
    node = Node(binary, workdir, path)
    try:
        events = cfg["quick_events"] if quick else rounded(best["events_per_second"] * RUN_SECONDS, batch)
        log(f"  max run: --concurrency {conc} --events {events:,}")
        result["max"] = run_gen(binary, node, path, events, batch, conc, seed=1)
        top = result["max"]["report"]["events_per_second"]
        rate = max(1, int(top * RATE_SHARE))
        events = rounded(rate * (3 if quick else RUN_SECONDS), batch)
        log(f"  rate run: --rate {rate:,} --events {events:,}")
        result["rate"] = run_gen(binary, node, path, events, batch, conc, seed=2, rate=rate)
        result["peak_rss"] = node.peak_rss()
        result["store"] = node.store_files()
    finally:
        node.stop()
        shutil.rmtree(node.store, ignore_errors=True)
    return result


# ---------------------------------------------------------------- reporting

def fmt_int(x) -> str:
    return f"{x:,.0f}"


def fmt_ms(x) -> str:
    return "–" if x is None else (f"{x:,.0f}" if x >= 100 else f"{x:.1f}")


def server_ms(q) -> str:
    value, overflow = q
    if value is None:
        return "–"
    return (">" if overflow else "") + fmt_ms(value * 1e3)


def throughput(result) -> float:
    """What the target counts: events/s, or requests/s for unary."""
    r = result["max"]["report"]
    return r["requests"] / r["seconds"] if result["path"] == "unary" else r["events_per_second"]


def rate_p99_ms(result):
    """Ack p99 at 80%: gen's per request; for stream gen only times whole
    streams, so the node's per-batch histogram (bucket-interpolated)."""
    if result["path"] == "stream":
        value, overflow = result["rate"]["server"]["ack_p99_s"]
        return None if value is None else value * 1e3, "server"
    return result["rate"]["report"]["ack_p99_ms"], "gen"


def paced(result) -> str:
    """Whether the rate run held its --rate (gen cannot pace a stream)."""
    got = result["rate"]["report"]["events_per_second"]
    want = result["rate"]["rate"]
    if got > want * 1.15:
        return "not paced"
    if got < want * 0.9:
        return "fell behind"
    return "ok"


def table(results) -> list:
    head = ["path", "batch", "conc", "max events/s", "req/s", "s", "p50 ms", "p99 ms",
            "@80% events/s", "p50 ms", "p99 ms", "node p99 ms", "peak RSS MiB",
            "flushes", "events/flush", "mean flush s", "writer busy", "node CPU", "gen CPU"]
    rows = []
    for res in results:
        if "rate" not in res:
            rows.append([res["path"], "FAILED (see Failures)"] + [""] * (len(head) - 2))
            continue
        mx, rt = res["max"], res["rate"]
        m, r, s = mx["report"], rt["report"], mx["server"]
        secs = m["seconds"]
        rows.append([
            res["path"], fmt_int(res["batch"]), str(res["concurrency"]), fmt_int(m["events_per_second"]),
            fmt_int(m["requests"] / secs), f"{secs:.1f}", fmt_ms(m["ack_p50_ms"]), fmt_ms(m["ack_p99_ms"]),
            fmt_int(r["events_per_second"]) + ("" if paced(res) == "ok" else f" ({paced(res)})"),
            fmt_ms(r["ack_p50_ms"]), fmt_ms(r["ack_p99_ms"]), server_ms(rt["server"]["ack_p99_s"]),
            fmt_int(res["peak_rss"] / MIB), fmt_int(s["flushes"]), fmt_int(s["events_per_flush"]),
            f"{s['flush_seconds'] / s['flushes']:.2f}" if s["flushes"] else "–",
            f"{s['flush_seconds'] / secs:.0%}",
            f"{mx['node_cpu_seconds'] / mx['wall_seconds']:.0%}",
            f"{mx['gen_cpu_seconds'] / mx['wall_seconds']:.0%}",
        ])
    return [head] + rows


def print_table(rows):
    widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(len(rows[0]))]
    for k, r in enumerate(rows):
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if k == 0:
            print("  ".join("-" * w for w in widths))


def markdown(rows) -> str:
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join("---" if i == 0 else "--:" for i in range(len(rows[0]))) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(out)


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def targets(results) -> list:
    done = {r["path"]: r for r in results if "rate" in r}
    lines = ["| target (from the issue) | reached | |", "|---|---|---|"]
    for path in ORDER:
        if path not in done:
            continue
        cfg, res = PATHS[path], done[path]
        got = throughput(res)
        lines.append(f"| {cfg['target_text']} | {path}: {fmt_int(got)} {cfg['unit']} "
                     f"({got / cfg['target']:.0%} of the target) | {verdict(got >= cfg['target'])} |")
    if done:
        p99 = {p: rate_p99_ms(r) for p, r in done.items()}
        known = {p: v for p, v in p99.items() if v[0] is not None}
        reached = ", ".join(f"{p} {fmt_ms(v[0])} ms" + (" (node histogram)" if v[1] == "server" else "")
                            for p, v in p99.items())
        unpaced = [p for p, r in done.items() if paced(r) != "ok"]
        ok = bool(known) and all(v[0] <= ACK_P99_TARGET_MS for v in known.values())
        if unpaced:
            reached += f" ({', '.join(unpaced)}: the rate run did not hold 80% of max, see below)"
        lines.append(f"| ack p99 ≤ 1.5 s at 80% of max | {reached} | {verdict(ok)}"
                     + (f" (not at 80% for {', '.join(unpaced)})" if unpaced else "") + " |")
        rss = max(done.values(), key=lambda r: r["peak_rss"])
        lines.append(f"| peak RSS ≤ 1 GiB | worst {fmt_int(rss['peak_rss'] / MIB)} MiB ({rss['path']}) | "
                     f"{verdict(rss['peak_rss'] <= RSS_TARGET)} |")
    return lines


def analysis(results) -> list:
    """Where the time went, per path, from the node's metrics of the max run."""
    out = []
    for res in results:
        if "rate" not in res:
            out.append(f"- **{res['path']}**: FAILED, see the error below.")
            continue
        mx = res["max"]
        s, secs = mx["server"], mx["report"]["seconds"]
        busy = s["flush_seconds"] / secs if secs else 0
        node_cpu = mx["node_cpu_seconds"] / mx["wall_seconds"]
        gen_cpu = mx["gen_cpu_seconds"] / mx["wall_seconds"]
        capacity = s["flushed"] / s["flush_seconds"] if s["flush_seconds"] else 0
        files = res["store"]
        per_commit = files["parquet_files"] / files["commits"] if files["commits"] else 0
        parts = [f"writer flushing {busy:.0%} of the run ({fmt_int(s['flushes'])} flush(es), mean "
                 f"{s['flush_seconds'] / max(s['flushes'], 1):.2f} s for {fmt_int(s['events_per_flush'])} events, "
                 f"p99 {server_ms(s['flush_p99_s'])} ms; flushing alone would take "
                 f"{fmt_int(capacity)} events/s)",
                 f"CPU: node {node_cpu:.0%}, gen {gen_cpu:.0%} of one core (2 cores in all)",
                 f"after both runs the store holds {files['parquet_files']:,} Parquet files in "
                 f"{files['commits']:,} commits ({per_commit:.1f} per commit: the events span 30 days of event "
                 f"time plus late ones, about one file per event_date partition a flush touches)"]
        reasons = []
        if busy >= 0.8:
            reasons.append("the single writer's flushes (write Parquet + Delta commit, one at a time)")
        if node_cpu + gen_cpu >= 1.7:
            reasons.append("CPU: the node and gen together keep both cores busy")
        if gen_cpu >= 0.9 and node_cpu + gen_cpu < 1.7:
            reasons.append("gen itself, near a full core (its event generator is one thread)")
        why = ("bound by " + " and ".join(reasons)) if reasons else (
            "neither the writer nor the CPUs saturated: bound by the round trips of the requests in flight, "
            "each waiting for its commit")
        out.append(f"- **{res['path']}** ({why}): " + "; ".join(parts) + ".")
    return out


def machine() -> dict:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = subprocess.run(["free", "-g"], capture_output=True, text=True).stdout.splitlines()
    total_gb = next((l.split()[1] for l in mem if l.startswith("Mem:")), "?")
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    return {"cpu": cpu, "nproc": nproc, "mem_gb": total_gb, "kernel": os.uname().release}


def build_profile(binary: str) -> str:
    if f"{os.sep}release{os.sep}" in binary:
        return "release profile"
    levels = {}
    section = None
    try:
        with open(os.path.join(REPO, "Cargo.toml")) as f:
            for line in f:
                line = line.strip()
                if line.startswith("["):
                    section = line
                elif section in ('[profile.dev]', '[profile.dev.package."*"]') and line.startswith("opt-level"):
                    levels[section] = line.split("=", 1)[1].strip()
    except OSError:
        pass
    own = levels.get("[profile.dev]", "0")
    deps = levels.get('[profile.dev.package."*"]', own)
    return (f"debug build (Cargo dev profile: opt-level {own} for clicklake, {deps} for the dependencies, "
            "debug assertions on), not a release build")


def describe_machine(m: dict) -> str:
    return f"{m['nproc']} cores ({m['cpu']}), {m['mem_gb']} GB RAM (`free -g`), Linux {m['kernel']}"


HEADER = """# Benchmarks

Measured numbers, each section written by its script (`make bench` runs them
all). Every section says on what machine, build and date it was measured and
with which command; numbers from different machines or builds do not compare.

First written {date} by `make bench-ingest` (`{command}`) on {machine}; {profile}.
"""


def section(results, args, m, profile, failures) -> str:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = shlex.join(["python3", "scripts/bench-ingest.py"] + sys.argv[1:])
    chosen = []
    for res in results:
        if res.get("probes"):
            probes = ", ".join(f"{p['concurrency']} → {fmt_int(p['events_per_second'])}" for p in res["probes"])
            size = "1 event per request" if res["path"] == "unary" else f"--batch-size {res['batch']:,}"
            chosen.append(f"- {res['path']}: {size}; concurrency probes (events/s): {probes}; "
                          f"kept {res.get('concurrency', '–')}")
    commands = [res[k]["command"] for res in results for k in ("max", "rate") if k in res]
    unpaced = [r["path"] for r in results if "rate" in r and paced(r) == "not paced"]
    lines = [
        "## Ingest",
        "",
        f"Measured {now} with `make bench-ingest` (`{command}`) on {describe_machine(m)}; "
        f"{profile}.",
        "",
        "Method: for each path a fresh `clicklake ingest` node (ingest role only, default settings: "
        "`--flush-rows 100000`, `--flush-interval 500ms`, `--max-buffered-events 1000000`) on a new local "
        "store in /tmp, driven by `clicklake gen --send PATH --json` on the same machine, so gen and the "
        "node share the 2 cores. gen's default traffic: power-law skew over 10,000 ads and 1,000,000 users, "
        "30 days of event time, 2% late events, 1% sent twice (the events/s below include the resends). "
        "An event counts once its request is acknowledged, which happens only after its Delta commit. "
        "Short probes pick the concurrency; the max run sends as fast as acks come back (about 20 s); the "
        "rate run sends at 80% of the max with `--rate`. Ack latencies are gen's, per request, "
        "except *node p99*: the node's `clicklake_ingest_ack_duration_seconds` histogram for the rate run "
        "(interpolated within power-of-two buckets, so approximate). Peak RSS is the node's VmHWM over the "
        "max and rate runs. After every run the node's accepted, flushed and rejected counters were checked "
        "equal to what gen saw acknowledged and rejected" + (" (they were)." if not failures else "."),
        "",
        "### Against the targets",
        "",
        *targets(results),
        "",
        "### Every path",
        "",
        "Columns: the max run's events/s, requests/s, length and ack p50/p99; the rate run's events/s and "
        "ack p50/p99 (gen) and p99 (node); the node's peak RSS; and, for the max run, the flushes (Delta "
        "commits), events per flush, mean flush time, the share of the run the writer spent flushing, and "
        "CPU use of the node and of gen (100% = one core).",
        "",
        markdown(table(results)),
        "",
    ]
    if "stream" in [r["path"] for r in results]:
        lines += ["For `stream` gen times whole calls (one per worker, lasting the run), so its p50/p99 "
                  "are stream lengths, not acks; the node's per-batch histogram is the ack latency."
                  + (" gen's `--rate` does not pace the stream path (it only paces after an "
                     "acknowledgement, and a stream is acknowledged once, at its end), so the "
                     "stream rate run ran at full speed and its latency is not at 80%."
                     if "stream" in unpaced else ""), ""]
    lines += ["### Where the time goes", "", *analysis(results), "",
              "### Concurrency", "", *chosen, ""]
    if failures:
        lines += ["### Failures", ""]
        for p, e in failures:
            text = e if len(e) <= 1500 else e[:1500] + " ..."
            lines += [f"{p}:", "", "```", text.rstrip(), "```", ""]
    lines += ["<details><summary>The gen commands of the measured runs</summary>", "", "```",
              *commands, "```", "", "</details>", ""]
    return "\n".join(lines)


def replace_section(doc: str, heading: str, text: str) -> str:
    """`doc` with its `## heading` section (up to the next `## `) replaced by
    `text`, or `text` appended when there is none."""
    start = re.search(rf"^## {re.escape(heading)}[ \t]*$", doc, re.M)
    if not start:
        return doc.rstrip("\n") + "\n\n" + text
    nxt = re.search(r"^## ", doc[start.end():], re.M)
    end = start.end() + nxt.start() if nxt else len(doc)
    return doc[:start.start()] + text + ("\n" if nxt else "") + doc[end:]


def write_doc(path: str, text: str, m: dict, profile: str):
    if os.path.exists(path):
        with open(path) as f:
            doc = f.read()
    else:
        doc = HEADER.format(machine=describe_machine(m), profile=profile,
                            date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
                            command=shlex.join(["python3", "scripts/bench-ingest.py"] + sys.argv[1:]))
    doc = replace_section(doc, "Ingest", text)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(doc.rstrip("\n") + "\n")


# ---------------------------------------------------------------- main

def default_bin() -> str:
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.expanduser("~/.cache/clicklake-target")
    return os.path.join(target, "debug", "clicklake")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bin", default=default_bin(), help="the clicklake binary (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="small runs, a smoke test; the page goes to the work directory")
    p.add_argument("--paths", default=",".join(ORDER), help="comma-separated subset of " + ",".join(ORDER))
    p.add_argument("--doc", help=f"the page to rewrite the Ingest section of (default {os.path.relpath(DOC, REPO)}; "
                                 "with --quick the work directory)")
    args = p.parse_args()
    paths = [x.strip() for x in args.paths.split(",") if x.strip()]
    unknown = [x for x in paths if x not in PATHS]
    if unknown or not paths:
        p.error(f"unknown path(s) {unknown}; choose from {','.join(ORDER)}")
    binary = os.path.abspath(args.bin)
    if not os.access(binary, os.X_OK):
        p.error(f"no clicklake binary at {binary} (make build, or --bin)")

    workdir = tempfile.mkdtemp(prefix="clicklake-bench-ingest-")
    doc = args.doc or (os.path.join(workdir, "BENCHMARKS.md") if args.quick else DOC)
    m, profile = machine(), build_profile(binary)
    print(f"bench-ingest{' (quick)' if args.quick else ''}: {binary}\n  {describe_machine(m)}; {profile}\n"
          f"  work directory {workdir}", flush=True)

    def log(msg):
        print(msg, flush=True)

    results, failures = [], []
    for path in [x for x in ORDER if x in paths]:
        log(f"{path}:")
        started = time.monotonic()
        try:
            results.append(bench_path(binary, workdir, path, args.quick, log))
        except BenchError as e:
            print(f"\nFAILED {path}:\n{e}\n", file=sys.stderr, flush=True)
            failures.append((path, str(e)))
            results.append({"path": path, "batch": PATHS[path]["batch"], "error": str(e)})
        log(f"  ({time.monotonic() - started:.0f} s)")

    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump({"machine": m, "profile": profile, "results": results}, f, indent=1, default=str)
    print()
    print_table(table(results))
    print()
    print("\n".join(targets(results)))
    print()
    write_doc(doc, section(results, args, m, profile, failures), m, profile)
    print(f"wrote the Ingest section of {doc}; raw results in {os.path.join(workdir, 'results.json')}")
    if failures:
        print(f"\nFAILED: {', '.join(p for p, _ in failures)} (see above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
