"""/metrics after a known load, and the alert rules against the metrics a
server exports."""

import json
import pathlib
import re
import urllib.error
import urllib.request

import adbc_driver_flightsql.dbapi as flightsql
import pytest

from conftest import ROOT, Server, clicklake_bin, rows

RULES = ROOT / "deploy" / "prometheus" / "clicklake-alerts.yml"


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("metrics") / "lake")
    try:
        assert "1000 stored" in s.load(1000)
        body = json.dumps([
            {"event_id": "m-1", "ad_id": "a", "user_id": "u", "timestamp": "2017-11-07T10:00:00Z"},
            {"event_id": "m-2", "ad_id": "a", "timestamp": "2017-11-07T10:00:00Z"},
            {"event_id": "m-3", "ad_id": "a", "user_id": "v", "timestamp": "2017-11-07T10:01:00Z"},
        ]).encode()
        req = urllib.request.Request(f"http://{s.http}/v1/clicks", data=body, method="POST",
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            assert json.loads(r.read())["accepted"] == 2
        s.wait_rolled_up()
        with flightsql.connect(s.uri, autocommit=True) as conn:
            for _ in range(3):
                assert rows(conn, "SELECT count(*) FROM ad_clicks") == [(1002,)]
            with pytest.raises(flightsql.Error):
                rows(conn, "SELECT * FROM no_such_table")
        yield s
    finally:
        s.stop()


def test_counters_after_a_known_load(loaded):
    m = loaded.metrics()
    assert m["clicklake_ingest_events_accepted_total"] == 1002
    assert m["clicklake_ingest_flushed_events_total"] == 1002
    assert m['clicklake_ingest_events_rejected_total{field="user_id"}'] == 1
    assert m["clicklake_ingest_buffered_events"] == 0
    assert m["clicklake_ingest_backpressure_refusals_total"] == 0
    assert m["clicklake_compactor_rolled_up_version"] == m["clicklake_ingest_table_version"]
    # Three good statements and one about a table that does not exist. (ADBC
    # plans a statement when it is prepared and again on DoGet; the counter
    # counts DoGets.)
    assert m['clicklake_query_statements_total{outcome="ok"}'] == 3
    assert m["clicklake_query_running_statements"] == 0
    # 1,000 loaded rows, one flush; the rollup levels each hold data.
    assert m['clicklake_compactor_table_files{table="ad_clicks"}'] >= 1
    for level in ["minute", "hour", "day", "month"]:
        assert m[f'clicklake_compactor_table_files{{table="ad_clicks_{level}"}}'] >= 1


def test_every_label_set_exists_at_zero_before_any_traffic(tmp_path):
    s = Server(tmp_path / "lake")
    try:
        m = s.metrics()
        for path in ["grpc_unary", "grpc_batch", "grpc_stream", "http", "flight"]:
            assert m[f'clicklake_ingest_requests_total{{path="{path}"}}'] == 0, path
            assert m[f'clicklake_ingest_received_bytes_total{{path="{path}"}}'] == 0, path
            assert m[f'clicklake_ingest_ack_duration_seconds_count{{path="{path}"}}'] == 0, path
        for field in ["event", "event_id", "ad_id", "user_id", "timestamp", "device", "os", "country",
                      "location", "campaign_id", "is_conversion", "unknown_field"]:
            assert m[f'clicklake_ingest_events_rejected_total{{field="{field}"}}'] == 0, field
        for outcome in ["ok", "invalid", "refused", "unauthenticated", "resources", "unavailable", "error"]:
            assert m[f'clicklake_query_statements_total{{outcome="{outcome}"}}'] == 0, outcome
    finally:
        s.stop()


def test_health_and_readiness(loaded, tmp_path):
    for path, text in [("/health", "ok"), ("/ready", "ready")]:
        with urllib.request.urlopen(f"http://{loaded.http}{path}", timeout=10) as r:
            assert (r.status, r.read().decode().strip()) == (200, text)
    # A store that cannot be opened is not ready: a file where the raw
    # table's folder should be (a local store, whichever store the suite uses).
    import shutil
    import subprocess
    store = tmp_path / "lake"
    proc = subprocess.Popen([clicklake_bin(), "query", "--store", str(store), "--grpc-addr", "127.0.0.1:0",
                             "--http-addr", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    try:
        http = proc.stdout.readline().split("http=")[1].split()[0]
        shutil.rmtree(store / "ad_clicks")
        (store / "ad_clicks").write_text("not a table")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://{http}/ready", timeout=10)
        assert e.value.code == 503
        assert e.value.read().decode().startswith("not ready: store:")
        with urllib.request.urlopen(f"http://{http}/health", timeout=10) as r:
            assert r.status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_alert_rules_pass_promtool(tmp_path):
    import shutil
    import subprocess
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make test-tools` installs it (Debian package prometheus)"
    check = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 8 rules found" in check.stdout, check.stdout
    # Unit tests of the rules: the data-quality and reconcile alerts fire from the metrics.
    unit = subprocess.run([promtool, "test", "rules", str(ROOT / "tests" / "prometheus" / "alerts_test.yml")],
                          capture_output=True, text=True)
    assert unit.returncode == 0, unit.stdout + unit.stderr


def test_every_metric_in_the_alert_rules_is_exported(loaded):
    exported = {re.sub(r"(_bucket|_sum|_count)?(\{.*\})?$", "", name) for name in loaded.metrics()}
    used = set(re.findall(r"clicklake_[a-z_]+", RULES.read_text()))
    assert used, "no metric found in the rules file"
    assert used - exported == set()
