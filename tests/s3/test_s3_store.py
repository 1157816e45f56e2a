"""Checks of the S3-compatible server itself, before any clicklake test
trusts it: Delta commits are only safe on a store whose conditional create
(`If-None-Match: *`) of an existing key fails atomically."""

import os
import subprocess
import uuid


def curl(*args):
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    key = f"{os.environ['AWS_ACCESS_KEY_ID']}:{os.environ['AWS_SECRET_ACCESS_KEY']}"
    out = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--aws-sigv4", "aws:amz:us-east-1:s3",
         "--user", key, "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD", *args[:-1], f"{endpoint}/{args[-1]}"],
        capture_output=True, text=True, timeout=30)
    return out.stdout


def test_conditional_create_of_an_existing_key_fails():
    bucket = os.environ["CLICKLAKE_TEST_S3"].removeprefix("s3://").split("/")[0]
    key = f"{bucket}/conditional-put-check/{uuid.uuid4()}.json"
    assert curl("-X", "PUT", "-H", "If-None-Match: *", "--data", "first", key) == "200"
    assert curl("-X", "PUT", "-H", "If-None-Match: *", "--data", "second", key) == "412"
