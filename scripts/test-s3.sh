#!/usr/bin/env bash
# The end-to-end suite against a real S3-compatible server: Ceph's RADOS
# Gateway from Debian's packages, started on loopback for this run only
# (scripts/ceph-rgw/), then stopped. Installs the gateway when missing
# (needs root and Debian's package index, as on CI).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}

if ! command -v radosgw >/dev/null 2>&1; then
    echo "== installing Ceph RADOS Gateway (radosgw, ceph-mon, ceph-osd) from Debian's packages"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends radosgw ceph-mon ceph-osd >/dev/null
fi

DIR=$(mktemp -d -t clicklake-rgw.XXXXXX)
PORT=${CLICKLAKE_RGW_PORT:-7480}
cleanup() {
    scripts/ceph-rgw/stop.sh "$DIR"
    rm -rf "$DIR"
}
trap cleanup EXIT
echo "== starting Ceph RGW on 127.0.0.1:$PORT"
scripts/ceph-rgw/start.sh "$DIR" "$PORT" clicklake-key clicklake-secret clicklake

export AWS_ENDPOINT_URL="http://127.0.0.1:$PORT"
export AWS_ACCESS_KEY_ID=clicklake-key
export AWS_SECRET_ACCESS_KEY=clicklake-secret
export AWS_REGION=us-east-1
export AWS_ALLOW_HTTP=true
export AWS_VIRTUAL_HOSTED_STYLE_REQUEST=false
# Every store the tests open lives below this bucket (one prefix per test store).
export CLICKLAKE_TEST_S3=s3://clicklake
# The drills stop and restart the gateway (tests/s3/test_s3_drills.py).
export CLICKLAKE_RGW_DIR="$DIR"
# Arguments, when given, replace the test paths (e.g. one file, or -k NAME).
if [ $# -eq 0 ]; then set -- tests/s3 tests/python; fi
"$PY" -m pytest -v "$@"
