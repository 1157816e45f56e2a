"""The JSON read API (`GET /v1/ads/{ad_id}/stats`, `GET /v1/users/{user_id}/clicks`)
against the first 3,000 rows of the real click log. Expected values were
counted from the CSV here with Python's csv module, not by clicklake."""

import json
import urllib.error
import urllib.request
from collections import defaultdict
from datetime import datetime, timezone

from conftest import csv_rows


def _get(server, path):
    try:
        with urllib.request.urlopen(f"http://{server.http}{path}", timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _utc(s: str) -> str:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_ad_stats_per_hour_match_a_recount_of_the_csv(server):
    ad = "3-280"  # the loader's ad id: app-channel
    clicks, users = defaultdict(int), defaultdict(set)
    for ip, app, device, os_, channel, click_time, *_ in csv_rows(3000):
        if f"{app}-{channel}" == ad:
            hour = click_time[:13].replace(" ", "T") + ":00:00Z"
            clicks[hour] += 1
            users[hour].add(ip)
    status, body = _get(server, f"/v1/ads/{ad}/stats?start=2017-11-01&end=2017-12-01&granularity=hour")
    assert status == 200, body
    got = {_utc(w["window_start"]): (w["clicks"], w["unique_users"]) for w in body["windows"]}
    assert got == {h: (clicks[h], len(users[h])) for h in clicks}
    window = body["windows"][0]
    assert isinstance(window["clicks_by_device"], dict)
    assert sum(window["clicks_by_device"].values()) == window["clicks"]
    assert {"is_final", "unique_users_exact", "source"} <= window.keys()


def test_user_clicks_match_the_csv(server):
    counts = defaultdict(int)
    for ip, *_ in csv_rows(3000):
        counts[ip] += 1
    user = max(counts, key=counts.get)
    status, body = _get(server, f"/v1/users/{user}/clicks?start=2017-11-01&end=2017-12-01")
    assert status == 200, body
    assert len(body["clicks"]) == counts[user]
    assert {c["user_id"] for c in body["clicks"]} == {user}


def test_bad_arguments_are_named(server):
    status, body = _get(server, "/v1/ads/3-280/stats?start=2017-11-01&end=2017-12-01&granularity=week")
    assert status == 400 and "granularity must be one of" in body["error"], body
    status, body = _get(server, "/v1/users/5348/clicks?start=yesterday&end=2017-12-01")
    assert status == 400 and "start" in body["error"], body


def test_top_ads_match_a_recount_of_the_csv(server):
    clicks = defaultdict(int)
    for ip, app, device, os_, channel, click_time, *_ in csv_rows(3000):
        if "2017-11-07" <= click_time < "2017-11-09":
            clicks[f"{app}-{channel}"] += 1
    expected = sorted(clicks.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    status, body = _get(server, "/v1/ads/top?start=2017-11-07&end=2017-11-09&limit=5")
    assert status == 200, body
    assert [(a["ad_id"], a["clicks"]) for a in body["ads"]] == expected


def test_stats_and_top_ads_before_any_rollup(tmp_path):
    """A store the compactor never ran on: every answer is a recount of the
    raw events (the sums over the stats must plan too)."""
    from conftest import start_role
    from drillkit import post
    store = tmp_path / "lake"
    ingest, _, ingest_http = start_role(store, "ingest", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
    query, _, query_http = start_role(store, "query", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
    try:
        class Node:
            http = query_http
        status, body = _get(Node, "/v1/ads/top?start=2017-11-01&end=2017-12-01")
        assert (status, body["ads"]) == (200, []), body
        events = [{"event_id": f"nr-{i}", "ad_id": f"ad-{i % 2}", "user_id": f"u-{i % 3}",
                   "timestamp": f"2017-11-07T10:{i:02d}:00Z", "is_conversion": i % 4 == 0} for i in range(10)]
        status, body = post(ingest_http, events)
        assert status == 200 and body["accepted"] == 10, body
        status, body = _get(Node, "/v1/ads/top?start=2017-11-01&end=2017-12-01")
        # ad-0: i = 0, 2, 4, 6, 8 (conversions at 0, 4, 8); ad-1: i = 1, 3, 5, 7, 9 (none).
        assert [(a["ad_id"], a["clicks"], a["conversions"]) for a in body["ads"]] == [("ad-0", 5, 3), ("ad-1", 5, 0)]
        status, body = _get(Node, "/v1/ads/ad-1/stats?start=2017-11-01&end=2017-12-01&granularity=day")
        assert [(w["clicks"], w["unique_users"], w["is_final"], w["source"]) for w in body["windows"]] == \
            [(5, 3, False, "ad_clicks")]
    finally:
        for p in (ingest, query):
            p.terminate()
            p.wait(timeout=60)
