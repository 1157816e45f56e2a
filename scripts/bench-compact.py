#!/usr/bin/env python3
"""Compactor throughput: rollup, backfill and optimize over clicklake gen's
synthetic set, and the open time of a table with thousands of commits.

Steps, each on a fresh local store in a temporary directory:
1. an ingest node takes N synthetic events (`clicklake gen --send flight`);
2. a compactor node (`clicklake compactor`, automatic optimize off) rolls the
   whole set up from nothing: events/s = N / time until every level reflects
   the newest raw version, and the node's peak RSS;
3. 1% more events, each late (up to 40 days), are sent: the incremental run's time;
4. `clicklake backfill` over the whole span: events/s;
5. `clicklake optimize`: time, and raw files before and after;
6. a second store gets 2,000 commits (one per unary request), and
   `clicklake sql "SELECT count(*) FROM ad_clicks"` against a query node on
   it is timed (process start, table open over the checkpoint, query).

Numbers go to the "## Compaction" section of docs/BENCHMARKS.md.
"""

import argparse
import datetime
import importlib.util
import json
import os
import re
import select
import shlex
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(REPO, "docs", "BENCHMARKS.md")

_spec = importlib.util.spec_from_file_location("bench_ingest", os.path.join(REPO, "scripts", "bench-ingest.py"))
kit = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kit)

START, SPAN_DAYS = "2026-01-01", 30


class Role(kit.Node):
    """One `clicklake ROLE` process on a store (the ingest bench's node, any role)."""

    def __init__(self, binary, role, store, log_path, *flags):
        self.name, self.store, self.log_path = role, store, log_path
        grpc = [] if role == "compactor" else ["--grpc-addr", "127.0.0.1:0"]
        self.args = [binary, role, "--store", store, *grpc, "--http-addr", "127.0.0.1:0", *flags]
        with open(log_path, "w") as log:
            self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=log, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 120)
        line = self.proc.stdout.readline() if ready else ""
        m = re.search(r"clicklake serving grpc=(\S+) http=(\S+)", line)
        if not m:
            self.stop()
            raise kit.BenchError(f"{role} did not start ({shlex.join(self.args)}): {line!r}")
        self.grpc, self.http = m.group(1), m.group(2)

    def metric(self, name):
        return kit.total(self.metrics(), name)


def raw_version(store):
    log = os.path.join(store, "ad_clicks", "_delta_log")
    return max(int(f[:20]) for f in os.listdir(log) if re.fullmatch(r"\d{20}\.json", f))


def raw_files(store):
    n = 0
    for root, _, files in os.walk(os.path.join(store, "ad_clicks")):
        if "_delta_log" not in root:
            n += sum(f.endswith(".parquet") for f in files)
    return n


def run(cmd, timeout=7200):
    started = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise kit.BenchError(f"{shlex.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return time.monotonic() - started, out.stdout


def gen(binary, node, events, *flags):
    cmd = [binary, "gen", "--events", str(events), "--start", START, "--span", f"{SPAN_DAYS}days",
           "--send", "flight", "--endpoint", f"http://{node.grpc}", "--batch-size", "50000",
           "--concurrency", "8", "--json", *flags]
    _, out = run(cmd)
    return json.loads(out.strip().splitlines()[-1]), cmd


def wait_rolled_up(compactor, store, timeout=7200):
    target = raw_version(store)
    started = time.monotonic()
    while compactor.metric("clicklake_compactor_rolled_up_version") < target:
        if compactor.proc.poll() is not None:
            raise kit.BenchError(f"the compactor exited; see {compactor.log_path}")
        if time.monotonic() - started > timeout:
            raise kit.BenchError("the compactor did not catch up")
        time.sleep(0.2)
    return time.monotonic() - started


SKIP_QUERIES = [
    ("one ad (`ad_id = 'ad-5000'`)", "SELECT count(*) FROM ad_clicks WHERE ad_id = 'ad-5000'"),
    ("one user (`user_id = 'u-123456'`)", "SELECT count(*) FROM ad_clicks WHERE user_id = 'u-123456'"),
]


def skipping(binary, query, what, sql):
    """What DataFusion's Parquet scan skipped for `sql`, from EXPLAIN ANALYZE."""
    t, out = run([binary, "sql", "--endpoint", f"http://{query.grpc}", f"EXPLAIN ANALYZE {sql}"])
    metric = lambda name: (re.search(rf"{name}=([^,\]|]+)", out) or [None, "?"])[1].strip()
    return {"what": what, "s": t, "row_groups_stats": metric("row_groups_pruned_statistics"),
            "row_groups_bloom": metric("row_groups_pruned_bloom_filter"),
            "pages": metric("page_index_rows_pruned"), "bytes": metric("bytes_scanned")}


def bench(binary, work, events):
    r = {"events": events}
    store = os.path.join(work, "store")
    node = Role(binary, "ingest", store, os.path.join(work, "ingest.log"))
    try:
        started = time.monotonic()
        g, r["gen_command"] = gen(binary, node, events)
        r["ingest_s"] = time.monotonic() - started
        r["acked"] = g.get("acked_events", g)
    finally:
        node.stop()
    r["raw_files"] = raw_files(store)
    r["raw_commits"] = raw_version(store) + 1

    compactor = Role(binary, "compactor", store, os.path.join(work, "compactor.log"),
                     "--optimize-interval", "0", "--rollup-interval", "200ms")
    try:
        r["rollup_s"] = wait_rolled_up(compactor, store)
        r["rollup_rss"] = compactor.peak_rss()
        node = Role(binary, "ingest", store, os.path.join(work, "ingest-late.log"))
        try:
            late = max(events // 100, 1000)
            gen(binary, node, late, "--seed", "7", "--late", "1.0")
            r["late_events"] = late
        finally:
            node.stop()
        r["incremental_s"] = wait_rolled_up(compactor, store)
        r["late_counted"] = compactor.metric("clicklake_compactor_late_events_total")
        r["rollup_rss"] = compactor.peak_rss()
    finally:
        compactor.stop()

    end = (datetime.date.fromisoformat(START) + datetime.timedelta(days=SPAN_DAYS + 1)).isoformat()
    r["backfill_s"], _ = run([binary, "backfill", "--store", store, "--from", "2025-11-01", "--to", end])
    r["files_before_optimize"] = raw_files(store)
    r["optimize_s"], out = run([binary, "optimize", "--store", store])
    m = re.search(r"^ad_clicks\s+files\s+(\d+) -> (\d+)\s+later copies removed\s+(\d+)", out, re.M)
    r["optimize_line"] = m.group(0) if m else out
    if m:
        r["live_files_before"], r["live_files_after"], r["copies_removed"] = map(int, m.groups())

    query = Role(binary, "query", store, os.path.join(work, "query.log"))
    try:
        r["skipping"] = [skipping(binary, query, what, sql) for what, sql in SKIP_QUERIES]
    finally:
        query.stop()

    many = os.path.join(work, "many-commits")
    node = Role(binary, "ingest", many, os.path.join(work, "ingest-many.log"), "--flush-interval", "1ms")
    try:
        run([binary, "gen", "--events", "2000", "--duplicates", "0", "--send", "unary", "--endpoint",
             f"http://{node.grpc}", "--concurrency", "1", "--json"])
    finally:
        node.stop()
    r["many_commits"] = raw_version(many) + 1
    query = Role(binary, "query", many, os.path.join(work, "query-many.log"))
    try:
        times = []
        for _ in range(5):
            t, out = run([binary, "sql", "--endpoint", f"http://{query.grpc}", "SELECT count(*) FROM ad_clicks"])
            times.append(t)
        r["open_s"] = sorted(times)[len(times) // 2]
        r["open_count"] = out.strip()
    finally:
        query.stop()
    checkpoint = os.path.join(many, "ad_clicks", "_delta_log", "_last_checkpoint")
    with open(checkpoint) as f:
        r["checkpoint_version"] = json.load(f)["version"]
    return r


def section(r, m, profile, command):
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    ev = r["events"]
    rate = lambda s: f"{ev / s:,.0f}"
    lines = [
        "## Compaction",
        "",
        f"Measured {now} with `make bench-compact` (`{command}`) on {kit.describe_machine(m)}; {profile}.",
        "",
        f"Data: `clicklake gen --events {ev:,}` (power-law skew over 10,000 ads and 1,000,000 users, "
        f"{SPAN_DAYS} days from {START}, 2% late, 1% sent twice), sent over Arrow Flight to an ingest node "
        f"({r['ingest_s']:.0f} s, {r['raw_commits']:,} raw commits, {r['raw_files']:,} files). Then a compactor "
        "node alone on the store (automatic optimize off), `clicklake backfill` and `clicklake optimize`; one "
        "job at a time, so each had both cores.",
        "",
        "| step | time | events/s | notes |",
        "|---|--:|--:|---|",
        f"| first rollup of every level, from nothing | {r['rollup_s']:.1f} s | {rate(r['rollup_s'])} | "
        f"compactor peak RSS {r['rollup_rss'] / 2**20:,.0f} MiB |",
        f"| incremental run after {r['late_events']:,} late events (`--late 1.0`: up to 40 days late, so nearly every date and month is recomputed) | {r['incremental_s']:.1f} s | "
        f"{r['late_events'] / r['incremental_s']:,.0f} | {r['late_counted']:,.0f} counted as late by "
        "`clicklake_compactor_late_events_total` |",
        f"| `clicklake backfill` of the whole span | {r['backfill_s']:.1f} s | {rate(r['backfill_s'])} | all four "
        "levels, from the raw events |",
        f"| `clicklake optimize` | {r['optimize_s']:.1f} s | {rate(r['optimize_s'])} | raw files "
        f"{r.get('live_files_before', '?')} → {r.get('live_files_after', '?')}, {r.get('copies_removed', '?'):,} "
        "later copies removed |",
        "",
        "Skipping after optimize (files sorted by `ad_id`, row groups of 65,536 rows, bloom filters on `ad_id` "
        "and `user_id`), from `EXPLAIN ANALYZE` on a query node: row groups kept by their statistics and by the bloom "
        "filters (\"total → matched\"), rows kept by the page index, bytes read.",
        "",
        "| query | row groups (statistics) | row groups (bloom filter) | rows (page index) | bytes scanned | time incl. client |",
        "|---|---|---|---|---|--:|",
        *[f"| {k['what']} | {k['row_groups_stats']} | {k['row_groups_bloom']} | {k['pages']} | {k['bytes']} | "
          f"{k['s'] * 1000:,.0f} ms |" for k in r["skipping"]],
        "",
        f"Table open: a raw table of {r['many_commits']:,} commits (last checkpoint at version "
        f"{r['checkpoint_version']:,}); `clicklake sql \"SELECT count(*) FROM ad_clicks\"` against a query node "
        f"on it took {r['open_s'] * 1000:,.0f} ms (median of 5, including the client process; answer "
        f"`{r['open_count'].splitlines()[-2] if r['open_count'].count(chr(10)) > 1 else r['open_count']}`).",
        "",
        "<details><summary>The gen command</summary>",
        "",
        "```",
        shlex.join(r["gen_command"]),
        "```",
        "",
        "</details>",
        "",
    ]
    return "\n".join(lines)


def write_section(path, text, section="Compaction"):
    """Rewrite one "## section" of the page at `path` (bench-query uses it too)."""
    with open(path) as f:
        doc = f.read()
    doc = kit.replace_section(doc, section, text)
    with open(path, "w") as f:
        f.write(doc.rstrip("\n") + "\n")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bin", default=kit.default_bin(), help="the clicklake binary (default: %(default)s)")
    p.add_argument("--events", type=int, default=20_000_000, help="synthetic events (default: %(default)s)")
    p.add_argument("--doc", default=DOC, help="the page to rewrite the Compaction section of")
    args = p.parse_args()
    binary = os.path.abspath(args.bin)
    if not os.access(binary, os.X_OK):
        p.error(f"{binary} is not an executable; run `make build`")
    command = shlex.join(["python3", "scripts/bench-compact.py"] + sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="clicklake-bench-compact-") as work:
        try:
            r = bench(binary, work, args.events)
        except kit.BenchError as e:
            print(f"bench-compact failed: {e}", file=sys.stderr)
            return 1
    text = section(r, kit.machine(), kit.build_profile(binary), command)
    print(text)
    write_section(args.doc, text)
    print(f"wrote the Compaction section of {os.path.relpath(args.doc, REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
