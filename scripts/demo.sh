#!/usr/bin/env bash
# The demo: start clicklake on the embedded local store ./clicklake-data, load
# the real TalkingData click log through the gRPC ingest API, wait until the
# rollups cover it, print a report queried over Flight SQL, load the file a
# second time to show that no count changes, and stop the server.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${CLICKLAKE_BIN:-clicklake}
STORE=${CLICKLAKE_STORE:-./clicklake-data}
GRPC=${CLICKLAKE_GRPC_ADDR:-127.0.0.1:50051}
HTTP=${CLICKLAKE_HTTP_ADDR:-127.0.0.1:8080}
DATA=data/talkingdata_train_sample.csv
LOG=$(mktemp -t clicklake-serve.XXXXXX.log)
export CLICKLAKE_ENDPOINT="http://$GRPC"

"$BIN" serve --store "$STORE" --grpc-addr "$GRPC" --http-addr "$HTTP" >"$LOG.out" 2>"$LOG" &
SERVER=$!
stop() {
    kill -TERM "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null || true
    rm -f "$LOG.out" "$LOG.report1" "$LOG.report2"
}
trap stop EXIT

for _ in $(seq 1 100); do
    grep -q "clicklake serving" "$LOG.out" 2>/dev/null && break
    if ! kill -0 "$SERVER" 2>/dev/null; then
        echo "clicklake serve exited; its log ($LOG):" >&2
        cat "$LOG" >&2
        exit 1
    fi
    sleep 0.1
done
echo "== clicklake serving on grpc=$GRPC http=$HTTP, store $STORE (log: $LOG)"

metric() { # value of a Prometheus metric from /metrics
    python3 -c "import sys,urllib.request
for l in urllib.request.urlopen('http://$HTTP/metrics').read().decode().splitlines():
    if l.startswith(sys.argv[1]+' '): print(l.split()[1])" "$1"
}

wait_rolled_up() {
    for _ in $(seq 1 600); do
        raw=$(metric clicklake_ingest_table_version)
        done_v=$(metric clicklake_compactor_rolled_up_version)
        [ -n "$raw" ] && [ "$raw" = "$done_v" ] && return 0
        sleep 0.2
    done
    echo "the rollups did not catch up with the raw table" >&2
    return 1
}

report() {
    echo
    echo "Clicks per day (ad_clicks_day rollup) and unique users per day (exact distinct count over ad_clicks):"
    "$BIN" sql "SELECT CAST(d.window_start AS DATE) AS day, d.clicks, u.unique_users, 'exact' AS unique_users_kind
        FROM (SELECT window_start, sum(clicks) AS clicks FROM ad_clicks_day GROUP BY window_start) d
        JOIN (SELECT date_trunc('day', event_time) AS window_start, count(DISTINCT user_id) AS unique_users
              FROM ad_clicks GROUP BY 1) u ON d.window_start = u.window_start
        ORDER BY day" 2>/dev/null
    echo "Total clicks at every rollup level:"
    "$BIN" sql "SELECT (SELECT sum(clicks) FROM ad_clicks_minute) AS minute, (SELECT sum(clicks) FROM ad_clicks_hour) AS hour,
        (SELECT sum(clicks) FROM ad_clicks_day) AS day, (SELECT sum(clicks) FROM ad_clicks_month) AS month" 2>/dev/null
    echo "Top 10 ads by clicks (ad_clicks_month rollup):"
    "$BIN" sql "SELECT ad_id, sum(clicks) AS clicks FROM ad_clicks_month
        GROUP BY ad_id ORDER BY clicks DESC, ad_id LIMIT 10" 2>/dev/null
}

existing=$("$BIN" sql "SELECT count(DISTINCT event_id) AS n FROM ad_clicks" 2>/dev/null | awk 'NR==4 {print $2}')
if [ -n "$existing" ] && [ "$existing" != "0" ]; then
    echo "note: $STORE already holds $existing events; the report counts them too (make clean-data for a fresh store)"
fi

echo "== loading $DATA through the ingest API"
"$BIN" load "$DATA" --format talkingdata
wait_rolled_up
report | tee "$LOG.report1"

echo
echo "== loading the same file a second time (event ids are derived from the file, so no count may change)"
"$BIN" load "$DATA" --format talkingdata
wait_rolled_up
report >"$LOG.report2"
if diff -q "$LOG.report1" "$LOG.report2" >/dev/null; then
    echo "second load: every number above is unchanged"
else
    echo "second load CHANGED the report:" >&2
    diff "$LOG.report1" "$LOG.report2" >&2
    exit 1
fi
echo "ad_clicks keeps every stored copy of a resent event until optimize; every count is by distinct event id:"
"$BIN" sql "SELECT count(*) AS rows_stored, count(DISTINCT event_id) AS distinct_events FROM ad_clicks" 2>/dev/null
echo "== clicklake optimize: later copies removed, small files clustered and packed"
"$BIN" optimize --store "$STORE" 2>/dev/null
"$BIN" sql "SELECT count(*) AS rows_stored, count(DISTINCT event_id) AS distinct_events FROM ad_clicks" 2>/dev/null
echo "== stopping clicklake"
