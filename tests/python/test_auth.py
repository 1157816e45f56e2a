"""Authentication on every listener, through real clients: the ADBC driver
logging in with a user and password (Flight SQL Handshake), bearer tokens,
the loader with a token, HTTP ingest, and a raw Flight DoGet without a token
(pyarrow.flight)."""

import json
import subprocess
import urllib.error
import urllib.request

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow.flight as flight
import pytest

from conftest import DATA, Server, clicklake_bin, flight_command, rows

USERS = "analyst:s3cret"
TOKEN = "producer-token-1"


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("auth") / "lake", "--auth-users", USERS, "--auth-tokens", TOKEN)
    try:
        yield s
    finally:
        s.stop()


def load(server, *extra):
    return subprocess.run(
        [clicklake_bin(), "load", str(DATA), "--format", "talkingdata", "--limit", "1000",
         "--endpoint", f"http://{server.grpc}", *extra],
        capture_output=True, text=True, timeout=300)


def test_loader_needs_a_token(secured):
    refused = load(secured)
    assert refused.returncode != 0
    assert "authentication required" in refused.stderr, refused.stderr
    ok = load(secured, "--token", TOKEN)
    assert ok.returncode == 0, ok.stderr
    assert "1000 stored" in ok.stdout


def test_user_logs_in_with_a_password_and_queries(secured):
    load(secured, "--token", TOKEN)
    with flightsql.connect(secured.uri, db_kwargs={"username": "analyst", "password": "s3cret"},
                           autocommit=True) as conn:
        assert rows(conn, "SELECT count(DISTINCT event_id) FROM ad_clicks") == [(1000,)]


def test_wrong_password_is_refused(secured):
    with pytest.raises(flightsql.Error, match="invalid user name or password"):
        with flightsql.connect(secured.uri, db_kwargs={"username": "analyst", "password": "wrong"},
                               autocommit=True) as conn:
            rows(conn, "SELECT 1")


def test_a_static_bearer_token_works_and_none_is_refused(secured):
    with flightsql.connect(secured.uri, db_kwargs={"adbc.flight.sql.authorization_header": f"Bearer {TOKEN}"},
                           autocommit=True) as conn:
        assert rows(conn, "SELECT 1 + 1") == [(2,)]
    with pytest.raises(flightsql.Error, match="authentication required"):
        with flightsql.connect(secured.uri, autocommit=True) as conn:
            rows(conn, "SELECT 1")


def test_do_get_without_a_token_is_refused(secured):
    client = flight.FlightClient(secured.uri)
    header = client.authenticate_basic_token("analyst", "s3cret")
    with_token = flight.FlightCallOptions(headers=[header])
    info = client.get_flight_info(flight.FlightDescriptor.for_command(flight_command("CommandStatementQuery", {1: "SELECT 42 AS answer"})),
                                  with_token)
    ticket = info.endpoints[0].ticket
    assert client.do_get(ticket, with_token).read_all().to_pylist() == [{"answer": 42}]
    with pytest.raises(flight.FlightUnauthenticatedError, match="authentication required"):
        client.do_get(ticket).read_all()


def test_http_ingest_needs_a_token(secured):
    body = json.dumps({"event_id": "auth-1", "ad_id": "a", "user_id": "u",
                       "timestamp": "2017-11-07T09:00:00Z"}).encode()
    req = urllib.request.Request(f"http://{secured.http}/v1/clicks", data=body, method="POST",
                                 headers={"content-type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=10)
    assert refused.value.code == 401
    assert "authentication required" in refused.value.read().decode()
    req.add_header("authorization", f"Bearer {TOKEN}")
    with urllib.request.urlopen(req, timeout=10) as r:
        assert json.loads(r.read())["accepted"] == 1


def test_an_open_server_refuses_a_non_loopback_address(tmp_path):
    out = subprocess.run([clicklake_bin(), "serve", "--store", str(tmp_path / "lake"),
                          "--grpc-addr", "0.0.0.0:0", "--http-addr", "127.0.0.1:0"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "0.0.0.0:0 is not a loopback address" in out.stderr, out.stderr
