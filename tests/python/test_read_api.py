"""The JSON read API (`GET /v1/ads/{ad_id}/stats`, `GET /v1/users/{user_id}/clicks`)
against the first 3,000 rows of the real click log. Expected values were
counted from the CSV here with Python's csv module, not by clicklake."""

import csv
import json
import urllib.error
import urllib.request
from collections import defaultdict
from datetime import datetime, timezone

from conftest import DATA


def _csv_rows(n=3000):
    with open(DATA, newline="") as f:
        reader = csv.reader(f)
        next(reader)
        for i, row in enumerate(reader):
            if i >= n:
                return
            # ip, app, device, os, channel, click_time, ...
            yield row


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
    for ip, app, device, os_, channel, click_time, *_ in _csv_rows():
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
    for ip, *_ in _csv_rows():
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
