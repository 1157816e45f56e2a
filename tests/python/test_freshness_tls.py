"""Freshness across nodes, and Flight SQL over TLS.

Freshness: an ingest node and a query node are separate processes on one
store and no compactor runs; the first query after an acknowledgement
already sees the events, in raw SQL and in `ad_click_stats` (which recounts
the windows the rollups do not reflect yet).

TLS: a server started with --tls-cert/--tls-key answers the ADBC driver and
`clicklake sql` over TLS with a certificate from a test CA, and refuses
plain-text clients."""

import datetime
import ipaddress
import subprocess

import adbc_driver_flightsql.dbapi as flightsql
import pytest

from conftest import Server, clicklake_bin, start_role
from drillkit import post


def test_an_acknowledged_click_is_seen_by_the_next_query_on_another_node(tmp_path):
    store = tmp_path / "lake"
    ingest, _, ingest_http = start_role(store, "ingest", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
                                        "--flush-interval", "100ms")
    query, query_grpc, _ = start_role(store, "query", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
    try:
        with flightsql.connect(f"grpc://{query_grpc}", autocommit=True) as conn, conn.cursor() as cur:
            seen = 0
            for i in range(1, 6):
                events = [{"event_id": f"fresh-{i}-{j}", "ad_id": "fresh-ad", "user_id": f"u{j}",
                           "timestamp": f"2026-11-0{i}T10:00:0{j}Z"} for j in range(3)]
                status, body = post(ingest_http, events)
                assert status == 200 and body["accepted"] == 3, body
                seen += 3
                cur.execute("SELECT count(*) FROM ad_clicks WHERE ad_id = 'fresh-ad'")
                assert cur.fetchall() == [(seen,)]
                cur.execute("SELECT sum(clicks), count(*) FROM ad_click_stats("
                            "'fresh-ad', '2026-11-01', '2026-12-01', 'day')")
                assert cur.fetchall() == [(seen, i)]
    finally:
        for p in (ingest, query):
            p.terminate()
            p.wait(timeout=60)


def _certificates(tmp_path):
    """A CA and a server certificate for 127.0.0.1 signed by it (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "clicklake test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(1)
          .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key")}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return paths


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tls")
    pem = _certificates(tmp)
    s = Server(tmp / "lake", "--tls-cert", str(pem["cert"]), "--tls-key", str(pem["key"]))
    try:
        yield s, pem
    finally:
        s.stop()


def test_adbc_queries_over_tls(tls_server):
    s, pem = tls_server
    with flightsql.connect(f"grpc+tls://{s.grpc}", autocommit=True,
                           db_kwargs={"adbc.flight.sql.client_option.tls_root_certs": pem["ca"].read_text()}) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT 40 + 2 AS answer")
            assert cur.fetchall() == [(42,)]


def test_clicklake_sql_over_tls_with_the_ca(tls_server):
    s, pem = tls_server
    out = subprocess.run([clicklake_bin(), "sql", "--endpoint", f"https://{s.grpc}", "--tls-ca", str(pem["ca"]),
                          "SELECT 40 + 2 AS answer"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "| 42     |" in out.stdout, out.stdout


def test_a_plain_text_client_is_refused(tls_server):
    s, _ = tls_server
    with flightsql.connect(f"grpc://{s.grpc}", autocommit=True) as conn, conn.cursor() as cur:
        with pytest.raises(flightsql.Error):
            cur.execute("SELECT 1")
