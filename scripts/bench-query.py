#!/usr/bin/env python3
"""Query latency: the HTTP read API and eight ad-hoc SQL queries over
clicklake gen's synthetic set, optimized and rolled up.

Steps, on a fresh local store in a temporary directory:
1. an ingest node takes N synthetic events (`clicklake gen --send flight`,
   the same command as bench-compact);
2. a compactor node (automatic optimize off) rolls every level up until it
   reflects the newest raw version; `clicklake optimize` then sorts the raw
   files by ad_id with bloom filters, and the compactor runs once more so
   the rollups also reflect optimize's commits (copy removal adds files;
   without this pass every stats call would recount from the raw table);
3. a `clicklake query` node alone on the store: `EXPLAIN` of ad_click_stats
   at each level shows what it reads;
4. the read API over HTTP (one keep-alive connection, one call at a time):
   `GET /v1/ads/{ad_id}/stats` for an hour (by minute), a day (by hour), a
   month (by day) and a year (by month), and `GET /v1/users/{user_id}/clicks`,
   each --repeat times over popular and unpopular ids: p50 and p99. When the
   node does not serve the read API (a binary older than it), or with
   --via sql, the same calls run as `clicklake sql` statements over the
   ad_click_stats / user_ad_clicks table functions instead;
5. eight ad-hoc SQL queries on the raw table, each run --sql-runs times
   with `clicklake sql`, and `SELECT 1` the same way for the process-start
   overhead.

Numbers go to the "## Query" section of docs/BENCHMARKS.md.
Python 3 standard library only.
"""

import argparse
import datetime
import http.client
import importlib.util
import json
import os
import random
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(REPO, "docs", "BENCHMARKS.md")

_spec = importlib.util.spec_from_file_location("bench_compact", os.path.join(REPO, "scripts", "bench-compact.py"))
compact = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compact)
kit = compact.kit  # scripts/bench-ingest.py

START, SPAN_DAYS = compact.START, compact.SPAN_DAYS
T0 = datetime.datetime.fromisoformat(START).replace(tzinfo=datetime.timezone.utc)
ADS, USERS = 10_000, 1_000_000  # gen's defaults (`--ads`, `--users`)
SEED = 1                        # which ids and ranges the calls use

# (label, granularity, range length) of the ad stats calls; "month" and
# "year" start at the first day of the data.
STATS = [
    ("an hour", "minute", "hour"),
    ("a day", "hour", "day"),
    ("a month", "day", "month"),
    ("a year", "month", "year"),
]
USER_RANGE = "month"  # getUserAdClicks over the whole month of data

# Fixed parameters of the ad-hoc queries: a day in the middle of the data.
DAY = (T0 + datetime.timedelta(days=14)).date()
HOUR = datetime.datetime.combine(DAY, datetime.time(12), datetime.timezone.utc)
WEEK = (DAY - datetime.timedelta(days=3), DAY + datetime.timedelta(days=3))


def iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


H0, H1 = iso(HOUR), iso(HOUR + datetime.timedelta(hours=1))

# Clicks count distinct event ids, as docs/DATA_LAYOUT.md prescribes for raw
# counts (a resent copy counts once).
SQL_QUERIES = [
    ("clicks per hour of one ad (the whole month)",
     "SELECT date_trunc('hour', event_time) AS hour, count(DISTINCT event_id) AS clicks FROM ad_clicks "
     "WHERE ad_id = 'ad-1' GROUP BY 1 ORDER BY 1"),
    ("top 10 ads in an hour",
     f"SELECT ad_id, count(DISTINCT event_id) AS clicks FROM ad_clicks WHERE event_date = DATE '{DAY}' "
     f"AND event_time >= '{H0}' AND event_time < '{H1}' GROUP BY ad_id ORDER BY clicks DESC, ad_id LIMIT 10"),
    ("exact unique users per ad per day (a week; top 20)",
     "SELECT ad_id, event_date, count(DISTINCT user_id) AS users FROM ad_clicks "
     f"WHERE event_date BETWEEN DATE '{WEEK[0]}' AND DATE '{WEEK[1]}' GROUP BY ad_id, event_date "
     "ORDER BY users DESC, ad_id, event_date LIMIT 20"),
    ("approximate unique users per ad per day (a week; top 20)",
     "SELECT ad_id, event_date, approx_distinct(user_id) AS users FROM ad_clicks "
     f"WHERE event_date BETWEEN DATE '{WEEK[0]}' AND DATE '{WEEK[1]}' GROUP BY ad_id, event_date "
     "ORDER BY users DESC, ad_id, event_date LIMIT 20"),
    ("device breakdown of a campaign (the whole month)",
     "SELECT device, count(DISTINCT event_id) AS clicks, count(DISTINCT user_id) AS users, "
     "count(DISTINCT CASE WHEN is_conversion THEN event_id END) AS conversions FROM ad_clicks "
     "WHERE campaign_id = 'c-1' GROUP BY device ORDER BY clicks DESC"),
    ("clicks per country per minute (one hour)",
     f"SELECT date_trunc('minute', event_time) AS minute, country, count(DISTINCT event_id) AS clicks "
     f"FROM ad_clicks WHERE event_date = DATE '{DAY}' AND event_time >= '{H0}' AND event_time < '{H1}' "
     "GROUP BY 1, 2 ORDER BY 1, 2"),
    ("one user's clicks (the whole month)",
     "SELECT event_time, event_id, ad_id, device, country, is_conversion FROM ad_clicks "
     "WHERE user_id = 'u-123456' ORDER BY event_time, event_id"),
    ("clicks and unique users per day",
     "SELECT event_date, count(DISTINCT event_id) AS clicks, count(DISTINCT user_id) AS users FROM ad_clicks "
     "GROUP BY event_date ORDER BY event_date"),
]


# ---------------------------------------------------------------- helpers

def percentile(xs, q):
    """Linear interpolation between the closest ranks (numpy's default)."""
    xs = sorted(xs)
    if not xs:
        return None
    pos = q * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def span_of(kind, start):
    if kind == "hour":
        return start + datetime.timedelta(hours=1)
    if kind == "day":
        return start + datetime.timedelta(days=1)
    if kind == "month":
        return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    if kind == "year":
        return start.replace(year=start.year + 1)
    raise ValueError(kind)


def range_start(rng, kind):
    """Where a call's range starts: a random whole hour or day inside the
    data's span, or its first day for a month or a year."""
    if kind == "hour":
        return T0 + datetime.timedelta(hours=rng.randrange(SPAN_DAYS * 24))
    if kind == "day":
        return T0 + datetime.timedelta(days=rng.randrange(SPAN_DAYS))
    return T0


def ad_ids(rng, n):
    """Half popular (the head of gen's power law: ad-0 … ad-24), half
    unpopular (random ads of the lower half, ad-5000 … ad-9999), alternating."""
    popular = [f"ad-{i}" for i in range(n)]
    unpopular = [f"ad-{i}" for i in rng.sample(range(ADS // 2, ADS), n)]
    return [(popular[i // 2], "popular") if i % 2 == 0 else (unpopular[i // 2], "unpopular") for i in range(n)]


def user_ids(rng, n):
    """Half active users (ranks 10 … 999: about 14,000 down to 700 clicks at
    20M events), half picked uniformly over all users (about ten)."""
    active = [f"u-{i}" for i in rng.sample(range(10, 1000), n)]
    typical = [f"u-{i}" for i in rng.sample(range(USERS), n)]
    return [(active[i // 2], "active") if i % 2 == 0 else (typical[i // 2], "typical") for i in range(n)]


def sql_literal(s):
    return "'" + s.replace("'", "''") + "'"


class Sql:
    """`clicklake sql` against one node, timed from process start to exit."""

    def __init__(self, binary, grpc):
        self.binary, self.endpoint = binary, f"http://{grpc}"

    def command(self, statement):
        return [self.binary, "sql", "--endpoint", self.endpoint, statement]

    def run(self, statement, timeout=1800):
        started = time.perf_counter()
        out = subprocess.run(self.command(statement), capture_output=True, text=True, timeout=timeout)
        wall = time.perf_counter() - started
        # The client prints "N row(s) in S s" on stderr: from sending the
        # statement to the last batch, without process start and connecting.
        m = re.search(r"^(\d+) row\(s\) in ([\d.]+)s$", out.stderr, re.M)
        return {"wall": wall, "ok": out.returncode == 0, "stdout": out.stdout, "stderr": out.stderr,
                "rows": int(m.group(1)) if m else None, "client": float(m.group(2)) if m else None}

    def check(self, statement):
        r = self.run(statement)
        if not r["ok"]:
            raise kit.BenchError(f"{shlex.join(self.command(statement))} failed:\n{r['stderr'][-3000:]}")
        return r


class Http:
    """One keep-alive HTTP/1.1 connection to the node's HTTP listener."""

    def __init__(self, addr):
        self.host, port = addr.rsplit(":", 1)
        self.port = int(port)
        self.conn = None

    def get(self, path):
        """(seconds, status, body): from sending the request to reading the
        last byte of the response (connecting, when needed, is not timed)."""
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=900)
                self.conn.connect()
            try:
                started = time.perf_counter()
                self.conn.request("GET", path)
                resp = self.conn.getresponse()
                body = resp.read()
                t = time.perf_counter() - started
                if resp.will_close:
                    self.close()
                return t, resp.status, body
            except (http.client.RemoteDisconnected, ConnectionError, http.client.BadStatusLine):
                self.close()  # a keep-alive connection the server closed: reconnect once
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# ---------------------------------------------------------------- the calls

def stats_calls(label, granularity, kind, repeat):
    rng = random.Random(f"{SEED}-{label}")
    calls = []
    for ad, group in ad_ids(rng, repeat):
        start = range_start(rng, kind)
        calls.append({"id": ad, "group": group, "start": iso(start), "end": iso(span_of(kind, start)),
                      "granularity": granularity})
    return calls


def user_calls(repeat):
    rng = random.Random(f"{SEED}-users")
    start = range_start(rng, USER_RANGE)
    return [{"id": u, "group": group, "start": iso(start), "end": iso(span_of(USER_RANGE, start))}
            for u, group in user_ids(rng, repeat)]


def http_path(kind, c):
    q = {"start": c["start"], "end": c["end"]}
    if kind == "stats":
        q["granularity"] = c["granularity"]
        return f"/v1/ads/{urllib.parse.quote(c['id'], safe='')}/stats?" + urllib.parse.urlencode(q)
    return f"/v1/users/{urllib.parse.quote(c['id'], safe='')}/clicks?" + urllib.parse.urlencode(q)


def sql_text(kind, c):
    if kind == "stats":
        return (f"SELECT * FROM ad_click_stats({sql_literal(c['id'])}, {sql_literal(c['start'])}, "
                f"{sql_literal(c['end'])}, {sql_literal(c['granularity'])}) ORDER BY window_start")
    return (f"SELECT * FROM user_ad_clicks({sql_literal(c['id'])}, {sql_literal(c['start'])}, "
            f"{sql_literal(c['end'])}) ORDER BY event_time, event_id")


def probe_http(client):
    """None when the node serves the read API, else why not."""
    path = http_path("stats", {"id": "ad-0", "start": START, "end": iso(T0 + datetime.timedelta(days=1)),
                               "granularity": "hour"})
    try:
        _, status, body = client.get(path)
    except OSError as e:
        return f"GET {path} failed: {e}"
    if status != 200:
        return f"GET {path} answered HTTP {status}: {body[:200].decode(errors='replace')!r}"
    try:
        json.loads(body)["windows"]
    except (ValueError, KeyError, TypeError) as e:
        return f"GET {path} answered no stats JSON ({e}): {body[:200]!r}"
    return None


def time_calls_http(client, kind, calls, warmup):
    client.get(http_path(kind, warmup))
    samples = []
    for c in calls:
        path = http_path(kind, c)
        t, status, body = client.get(path)
        if status != 200:
            raise kit.BenchError(f"GET {path}: HTTP {status}: {body[:500]!r}")
        doc = json.loads(body)
        rows = doc["windows"] if kind == "stats" else doc["clicks"]
        samples.append({"group": c["group"], "s": t, "rows": len(rows), "bytes": len(body),
                        "raw_windows": sum(1 for w in rows if w.get("source") == "ad_clicks") if kind == "stats" else 0})
    return samples


def time_calls_sql(sql, kind, calls, warmup):
    sql.check(sql_text(kind, warmup))
    samples = []
    for c in calls:
        r = sql.check(sql_text(kind, c))
        raw = r["stdout"].count("| ad_clicks ") if kind == "stats" else 0
        samples.append({"group": c["group"], "s": r["client"] if r["client"] is not None else r["wall"],
                        "wall": r["wall"], "rows": r["rows"] or 0, "bytes": len(r["stdout"]), "raw_windows": raw})
    return samples


def summarize(samples, groups):
    times = [x["s"] for x in samples]
    out = {"n": len(samples), "p50": percentile(times, 0.5), "p99": percentile(times, 0.99),
           "max": max(times), "rows": statistics.mean(x["rows"] for x in samples),
           "bytes": statistics.mean(x["bytes"] for x in samples),
           "raw_windows": sum(x["raw_windows"] for x in samples)}
    for g in groups:
        ts = [x["s"] for x in samples if x["group"] == g]
        rows = [x["rows"] for x in samples if x["group"] == g]
        out[g] = {"p50": percentile(ts, 0.5), "rows": statistics.mean(rows) if rows else 0}
    if "wall" in samples[0]:
        out["wall_p50"] = percentile([x["wall"] for x in samples], 0.5)
    return out


def read_api(binary, query, repeat, via, log):
    r = {"via": via, "fallback_reason": None}
    client = Http(query.http)
    sql = Sql(binary, query.grpc)
    if via in ("auto", "http"):
        reason = probe_http(client)
        if reason and via == "http":
            raise kit.BenchError(f"the HTTP read API is not reachable on the query node: {reason}")
        if reason:
            log(f"  the HTTP read API is not reachable ({reason}); timing the same calls over `clicklake sql`")
            r["fallback_reason"] = reason
        r["via"] = "sql" if reason else "http"
    groups = []
    for label, granularity, kind in STATS:
        calls = stats_calls(label, granularity, kind, repeat)
        warmup = dict(calls[0], id="ad-9999")
        samples = (time_calls_http(client, "stats", calls, warmup) if r["via"] == "http"
                   else time_calls_sql(sql, "stats", calls, warmup))
        s = summarize(samples, ["popular", "unpopular"])
        s.update(call="getAdClickStats", range=label, granularity=granularity,
                 example=http_path("stats", calls[0]) if r["via"] == "http" else sql_text("stats", calls[0]))
        groups.append(s)
        log(f"  stats over {label} by {granularity}: p50 {s['p50'] * 1000:.1f} ms, p99 {s['p99'] * 1000:.1f} ms "
            f"({s['rows']:.1f} windows on average)")
    calls = user_calls(repeat)
    warmup = dict(calls[0], id="u-999999")
    samples = (time_calls_http(client, "user", calls, warmup) if r["via"] == "http"
               else time_calls_sql(sql, "user", calls, warmup))
    s = summarize(samples, ["active", "typical"])
    s.update(call="getUserAdClicks", range="a month", granularity="–",
             example=http_path("user", calls[0]) if r["via"] == "http" else sql_text("user", calls[0]))
    groups.append(s)
    log(f"  user clicks over a month: p50 {s['p50'] * 1000:.1f} ms, p99 {s['p99'] * 1000:.1f} ms "
        f"({s['rows']:.1f} clicks on average)")
    client.close()
    r["groups"] = groups
    return r


def adhoc(binary, query, runs, log):
    sql = Sql(binary, query.grpc)
    base = [sql.check("SELECT 1") for _ in range(runs)]
    r = {"overhead": statistics.median(x["wall"] for x in base),
         "overhead_client": statistics.median(x["client"] for x in base if x["client"] is not None),
         "queries": []}
    log(f"  `clicklake sql \"SELECT 1\"`: {r['overhead'] * 1000:.0f} ms (median of {runs})")
    for what, text in SQL_QUERIES:
        results = [sql.run(text) for _ in range(runs)]
        ok = [x for x in results if x["ok"]]
        q = {"what": what, "sql": text, "runs": len(results), "ok": len(ok)}
        if ok:
            q.update(median=statistics.median(x["wall"] for x in ok), min=min(x["wall"] for x in ok),
                     max=max(x["wall"] for x in ok), rows=ok[-1]["rows"],
                     client=statistics.median(x["client"] for x in ok if x["client"] is not None)
                     if any(x["client"] is not None for x in ok) else None)
            log(f"  {what}: {q['median'] * 1000:,.0f} ms median ({q['rows']} rows)")
        bad = [x for x in results if not x["ok"]]
        if bad:
            lines = [l for l in bad[-1]["stderr"].strip().splitlines() if l.strip()]
            q["error"] = lines[-1] if lines else "(no message)"
            log(f"  {what}: {len(bad)} of {runs} runs failed: {q['error']}")
        r["queries"].append(q)
    return r


def explain_stats(binary, query):
    """The AdClickStatsExec line of EXPLAIN for one call per level."""
    sql = Sql(binary, query.grpc)
    lines = []
    for label, granularity, kind in STATS:
        start = range_start(random.Random(0), kind)
        c = {"id": "ad-1", "start": iso(start), "end": iso(span_of(kind, start)), "granularity": granularity}
        out = sql.check("EXPLAIN " + sql_text("stats", c))["stdout"]
        m = re.search(r"AdClickStatsExec: ([^|]*)", out)
        lines.append(m.group(1).strip() if m else "(no AdClickStatsExec line in EXPLAIN)")
    return lines


# ---------------------------------------------------------------- the data

def wait_caught_up(compactor, store, timeout=7200):
    """Until the compactor has taken in every raw commit: its gauge reaches
    the newest version, or (a fresh process) it finished a run over the new
    commits, which leaves the gauge alone when they added no data files."""
    target = compact.raw_version(store)
    started = time.monotonic()
    while True:
        samples = compactor.metrics()
        if (kit.total(samples, "clicklake_compactor_rolled_up_version") >= target
                or kit.total(samples, "clicklake_compactor_rollup_runs_total") >= 1):
            return time.monotonic() - started
        if compactor.proc.poll() is not None:
            raise kit.BenchError(f"the compactor exited; see {compactor.log_path}")
        if time.monotonic() - started > timeout:
            raise kit.BenchError("the compactor did not catch up")
        time.sleep(0.2)


def prepare(binary, work, events, log):
    r = {"events": events}
    store = os.path.join(work, "store")
    node = compact.Role(binary, "ingest", store, os.path.join(work, "ingest.log"))
    try:
        log(f"sending {events:,} events over Arrow Flight")
        started = time.monotonic()
        g, r["gen_command"] = compact.gen(binary, node, events)
        r["ingest_s"] = time.monotonic() - started
        r["acked"] = g.get("acked_events", g)
    finally:
        node.stop()
    r["raw_commits"] = compact.raw_version(store) + 1
    r["raw_files"] = compact.raw_files(store)

    def compactor_pass(name, wait):
        c = compact.Role(binary, "compactor", store, os.path.join(work, f"{name}.log"),
                         "--optimize-interval", "0", "--rollup-interval", "200ms")
        try:
            return wait(c, store)
        finally:
            c.stop()

    log("rolling every level up")
    r["rollup_s"] = compactor_pass("compactor", compact.wait_rolled_up)
    log("optimize")
    r["optimize_s"], out = compact.run([binary, "optimize", "--store", store])
    m = re.search(r"^ad_clicks\s+files\s+(\d+) -> (\d+)\s+later copies removed\s+(\d+)", out, re.M)
    r["optimize_line"] = m.group(0) if m else out.strip()
    if m:
        r["live_files_before"], r["live_files_after"], r["copies_removed"] = map(int, m.groups())
    log("rolling up optimize's commits")
    r["catch_up_s"] = compactor_pass("compactor-2", wait_caught_up)
    r["raw_version"] = compact.raw_version(store)
    return r, store


def bench(binary, work, events, repeat, runs, via, log):
    r, store = prepare(binary, work, events, log)
    query = compact.Role(binary, "query", store, os.path.join(work, "query.log"))
    try:
        sql = Sql(binary, query.grpc)
        r["raw_rows"] = sql.check("SELECT count(*) AS n FROM ad_clicks")["stdout"]
        r["explain"] = explain_stats(binary, query)
        log("read API")
        r["read"] = read_api(binary, query, repeat, via, log)
        log("ad-hoc SQL")
        r["sql"] = adhoc(binary, query, runs, log)
        r["query_rss"] = query.peak_rss()
    finally:
        query.stop()
    m = re.search(r"\|\s*(\d+)\s*\|", r["raw_rows"])
    r["raw_rows"] = int(m.group(1)) if m else None
    return r


# ---------------------------------------------------------------- the page

def secs(s):
    return f"{s:.1f} s" if s < 10 else f"{s:,.0f} s"


def ms(s):
    if s is None:
        return "–"
    return f"{s * 1000:,.1f}" if s < 0.1 else f"{s * 1000:,.0f}"


def section(r, m, profile, command, repeat, runs):
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    ev, read, sq = r["events"], r["read"], r["sql"]
    half = (repeat + 1) // 2  # popular ads: ad-0 ... ad-(half - 1)
    lines = [
        "## Query",
        "",
        f"Measured {now} with `make bench-query` (`{command}`) on {kit.describe_machine(m)}; {profile}.",
        "",
        f"Data: `clicklake gen --events {ev:,}` (power-law skew over {ADS:,} ads and {USERS:,} users, "
        f"{SPAN_DAYS} days from {START}, 2% late, 1% sent twice), sent over Arrow Flight to an ingest node "
        f"({secs(r['ingest_s'])}, {r['raw_commits']:,} raw commits, {r['raw_files']:,} files); a compactor node "
        f"(automatic optimize off) rolled every level up ({secs(r['rollup_s'])}); `clicklake optimize` sorted the "
        f"raw files by `ad_id` with bloom filters on `ad_id` and `user_id` ({secs(r['optimize_s'])}, raw files "
        f"{r.get('live_files_before', '?')} → {r.get('live_files_after', '?')}, "
        f"{r.get('copies_removed', '?')} later copies removed); and the compactor ran once more until the rollups "
        f"reflected optimize's commits too ({secs(r['catch_up_s'])}). The raw table then held "
        f"{'?' if r['raw_rows'] is None else format(r['raw_rows'], ',')} rows. Then a `clicklake query` "
        "node (default settings) alone on the store, nothing else running; every client ran on the same machine. "
        "`EXPLAIN` of `ad_click_stats` for one ad at each level, to show the calls read the rollups and recount "
        "nothing from the raw table:",
        "",
        *[f"- `{e}`" for e in r["explain"]],
        "",
    ]
    if read["via"] == "http":
        lines += [
            "### Read API (HTTP)",
            "",
            f"Each row: {repeat} calls, one at a time, over one keep-alive HTTP/1.1 connection (Python's "
            "`http.client`) to the query node's HTTP listener. The time runs from sending the request to reading "
            "the last byte of the response, so it includes HTTP and the node's JSON encoding of the result "
            "(not the client's JSON parsing). One untimed warm-up call before each row. p99 of "
            f"{repeat} samples is interpolated between the two slowest, so read it as about the worst call.",
            "",
        ]
    else:
        why = (f"The query node did not serve the HTTP read API ({read['fallback_reason']}), so the same calls ran"
               if read["fallback_reason"] else "With `--via sql` the same calls ran")
        lines += [
            "### Read API (over SQL: " + ("the HTTP read API was not reachable)" if read["fallback_reason"]
                                          else "`--via sql`)"),
            "",
            f"{why} as `clicklake sql` statements over the table functions the HTTP handlers call "
            "(`SELECT * FROM ad_click_stats(ad, start, end, granularity) ORDER BY window_start`, "
            "`SELECT * FROM user_ad_clicks(user, start, end) ORDER BY event_time, event_id`). Times are the "
            "client's own (its `N row(s) in S s` line: from sending the statement to the last batch, without "
            f"process start and connecting). One untimed warm-up call before each row; {repeat} calls per row, "
            "one at a time.",
            "",
        ]
    stats_rows = [g for g in read["groups"] if g["call"] == "getAdClickStats"]
    user = next(g for g in read["groups"] if g["call"] == "getUserAdClicks")
    lines += [
        f"`getAdClickStats`: half the calls over popular ads (ad-0 … ad-{half - 1}, the head of gen's power law; "
        "ad-0 alone takes about 4.6% of all clicks), half over unpopular ones (random ads among ad-5000 … "
        "ad-9999); hours and days at random inside the month of data; month and year ranges from "
        f"{START}. \"windows\" is the mean number returned.",
        "",
        "| range | granularity | calls | windows | p50 ms | p99 ms | popular p50 ms | unpopular p50 ms | windows recounted from raw |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|",
        *[f"| {g['range']} | {g['granularity']} | {g['n']} | {g['rows']:,.1f} | {ms(g['p50'])} | {ms(g['p99'])} | "
          f"{ms(g['popular']['p50'])} | {ms(g['unpopular']['p50'])} | {g['raw_windows']} |" for g in stats_rows],
        "",
        f"`getUserAdClicks` over the whole month of data: half the calls for active users (random among u-10 … "
        f"u-999: from about 14,000 clicks each down to about 700 at 20M events), half for users picked uniformly "
        f"among all {USERS:,} (about ten clicks for the median user at 20M events); the mean number of clicks "
        "returned is in the table.",
        "",
        "| range | calls | clicks returned (mean) | p50 ms | p99 ms | active users p50 ms (clicks) | typical users p50 ms (clicks) |",
        "|---|--:|--:|--:|--:|--:|--:|",
        f"| a month | {user['n']} | {user['rows']:,.1f} | {ms(user['p50'])} | {ms(user['p99'])} | "
        f"{ms(user['active']['p50'])} ({user['active']['rows']:,.1f}) | "
        f"{ms(user['typical']['p50'])} ({user['typical']['rows']:,.1f}) |",
        "",
        f"Example calls: `{stats_rows[0]['example']}`, `{user['example']}`.",
        "",
        "### Ad-hoc SQL on the raw table",
        "",
        f"Each query ran {runs} times as `clicklake sql --endpoint http://<query node> \"<SQL>\"`, one at a "
        "time; *wall* is the whole client process, from start to exit (process start, connecting, planning, "
        "running, printing the table). The same for `SELECT 1`, the process-start and round-trip overhead to "
        f"subtract: **{ms(sq['overhead'])} ms** median wall ({ms(sq['overhead_client'])} ms of it the statement "
        "itself). *client* is the client's own time for the statement (its `N row(s) in S s` line: from sending "
        "it to the last batch, without process start and connecting). Clicks count distinct event ids, as "
        "[DATA_LAYOUT.md](DATA_LAYOUT.md) prescribes for raw counts.",
        "",
        "| # | query | rows | median wall ms | min ms | max ms | median client ms |",
        "|--:|---|--:|--:|--:|--:|--:|",
    ]
    for i, q in enumerate(sq["queries"], 1):
        if q["ok"]:
            fail = f" ({q['runs'] - q['ok']} of {q['runs']} runs failed: {q['error']})" if q.get("error") else ""
            lines.append(f"| {i} | {q['what']}{fail} | {q['rows']} | {ms(q['median'])} | {ms(q['min'])} | "
                         f"{ms(q['max'])} | {ms(q['client'])} |")
        else:
            lines.append(f"| {i} | {q['what']} (failed: {q['error'].replace('|', '/')}) | – | – | – | – | – |")
    lines += ["", "The queries:", ""]
    lines += [f"{i}. {q['what']}: `{q['sql']}`" for i, q in enumerate(sq["queries"], 1)]
    lines += [
        "",
        f"The query node's peak RSS over all of it: {r['query_rss'] / 2**20:,.0f} MiB.",
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


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bin", default=kit.default_bin(), help="the clicklake binary (default: %(default)s)")
    p.add_argument("--events", type=int, default=20_000_000, help="synthetic events (default: %(default)s)")
    p.add_argument("--repeat", type=int, default=50, help="calls per read API row (default: %(default)s)")
    p.add_argument("--sql-runs", type=int, default=5, help="runs of each SQL query (default: %(default)s)")
    p.add_argument("--via", choices=["auto", "http", "sql"], default="auto",
                   help="the read API over HTTP, or its table functions over `clicklake sql`; auto: HTTP when "
                        "the node serves it (default: %(default)s)")
    p.add_argument("--doc", default=DOC, help="the page to rewrite the Query section of")
    args = p.parse_args()
    if args.repeat < 2 or args.sql_runs < 1:
        p.error("--repeat must be at least 2 and --sql-runs at least 1")
    binary = os.path.abspath(args.bin)
    if not os.access(binary, os.X_OK):
        p.error(f"{binary} is not an executable; run `make build`")
    command = shlex.join(["python3", "scripts/bench-query.py"] + sys.argv[1:])

    def log(msg):
        print(msg, flush=True)

    with tempfile.TemporaryDirectory(prefix="clicklake-bench-query-") as work:
        try:
            r = bench(binary, work, args.events, args.repeat, args.sql_runs, args.via, log)
        except kit.BenchError as e:
            print(f"bench-query failed: {e}", file=sys.stderr)
            return 1
    text = section(r, kit.machine(), kit.build_profile(binary), command, args.repeat, args.sql_runs)
    print(text)
    compact.write_section(args.doc, text, "Query")
    print(f"wrote the Query section of {os.path.relpath(args.doc, REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
