"""The AWS batch job resumes: a SageMaker Processing job of the image (`batch ... --resume-from
s3://.../{execution}/`) is killed mid-run, what it wrote is uploaded as SageMaker's Continuous
upload does, and a new job of the same execution (fresh disk, freshly downloaded inputs) skips the
uploaded chunks. Against a moto S3 server that checks SigV4 signatures and the processing role's
policy from infra/aws/batch.py (IAM enforced); the image's own stdlib S3 client, no boto3."""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from model_packages.batch.s3 import S3Client, S3Error, credentials, split_uri
from tests.support import ROOT, moto_threaded

IRIS = ROOT / "examples" / "iris-classifier"
PREFIX = "iris/iris-batch/"
CHUNK = 20
ROWS = 3000


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A moto server; bucket `scores`; an IAM user holding exactly the processing role's policy.
    Yields that user's environment; every request after setup is authenticated and authorised."""
    import boto3
    import requests
    from moto import settings

    from infra.aws.batch import ProcessingBatchJobArgs, processing_policy
    from infra.batch_config import BatchSettings

    with moto_threaded() as url:
        requests.post(f"{url}/moto-api/reset", timeout=10).raise_for_status()  # moto's state is per process
        admin = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "eu-west-1",
                 "endpoint_url": url}
        try:
            boto3.client("s3", **admin).create_bucket(
                Bucket="scores", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
            iam = boto3.client("iam", **admin)
            iam.create_user(UserName="processing")
            args = ProcessingBatchJobArgs(
                account_id="123456789012", region="eu-west-1", job_prefix="iris-batch", image="x", repository_arn="x",
                settings=BatchSettings.model_validate({"input": "s3://raw/daily/", "output": "s3://scores/iris/",
                                                       "inputs": ["day.csv"]}))
            policy = processing_policy(args, "arn:aws:ecr:eu-west-1:123456789012:repository/kaizen/iris")
            for statement in policy["Statement"]:  # moto does not evaluate s3:prefix (test_batch_clouds.py checks it)
                if statement["Action"] == ["s3:ListBucket"]:  # and names List Objects V2 its own way
                    del statement["Condition"]
                    statement["Action"] = ["s3:ListBucket", "s3:ListObjectsV2"]
            iam.put_user_policy(UserName="processing", PolicyName="processing", PolicyDocument=json.dumps(policy))
            key = iam.create_access_key(UserName="processing")["AccessKey"]
            iam.create_user(UserName="operator")  # the test's own hand: uploads as SageMaker would, deletes, reads
            iam.put_user_policy(UserName="operator", PolicyName="all", PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:*"], "Resource": "*"}]}))
            operator = iam.create_access_key(UserName="operator")["AccessKey"]
            monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # IAM on from here
            env = {"AWS_REGION": "eu-west-1", "AWS_ENDPOINT_URL": url}
            yield {**env, "AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
                   "OPERATOR_KEY_ID": operator["AccessKeyId"], "OPERATOR_SECRET": operator["SecretAccessKey"]}
        finally:
            requests.post(f"{url}/moto-api/reset", timeout=10)


def _boto(env: dict[str, str], who: str = "operator") -> Any:
    import boto3

    keys = ((env["OPERATOR_KEY_ID"], env["OPERATOR_SECRET"]) if who == "operator"
            else (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]))
    return boto3.client("s3", aws_access_key_id=keys[0], aws_secret_access_key=keys[1],
                        region_name=env["AWS_REGION"], endpoint_url=env["AWS_ENDPOINT_URL"])


def _input(path: Path) -> Path:
    """Iris rows with a bad one every 97 rows (rejects), the same bytes each call."""
    lines = ["sepal_length,sepal_width,petal_length,petal_width"]
    for n in range(ROWS):
        lines.append("1,2,abc,1" if n % 97 == 5 else f"{4 + n % 40 / 10},{2 + n % 20 / 10},{1 + n % 60 / 10},"
                                                     f"{0.1 + n % 25 / 10}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def _job(workdir: Path, env: dict[str, str], execution: str) -> subprocess.Popen[bytes]:
    """One processing job: the image's entry point with SageMaker's arguments (paths under workdir)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KAIZEN_"))}
    full.update({k: v for k, v in env.items() if k.startswith("AWS_")}, KAIZEN_MODEL_DIR=str(IRIS),
                KAIZEN_BATCH_RUN=execution, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    day = _input(workdir / "input" / "0" / "day.csv")
    return subprocess.Popen(
        [sys.executable, "-m", "model_packages.serving", "batch", str(day), "--out", str(workdir / "output"),
         "--chunk-rows", str(CHUNK), "--resume-from", f"s3://scores/{PREFIX}{{execution}}/"],
        env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=workdir.parent)


def _upload(client: Any, out: Path, execution: str) -> list[str]:
    """What S3UploadMode Continuous leaves in the prefix: every finished file (no temporaries)."""
    keys = []
    for path in sorted(p for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")):
        key = f"{PREFIX}{execution}/{path.relative_to(out).as_posix()}"
        client.put_object(Bucket="scores", Key=key, Body=path.read_bytes())
        keys.append(key)
    return keys


def _events(stdout: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.decode().splitlines() if line.startswith("{")]


def _scores(client: Any, prefix: str) -> tuple[list[list[str]], list[dict[str, Any]]]:
    listed = client.list_objects_v2(Bucket="scores", Prefix=prefix, MaxKeys=1000)
    assert not listed.get("IsTruncated")
    rows: list[list[str]] = []
    rejects: list[dict[str, Any]] = []
    for item in listed["Contents"]:
        body = client.get_object(Bucket="scores", Key=item["Key"])["Body"].read().decode()
        if "/predictions/" in "/" + item["Key"]:
            rows += list(csv.reader(io.StringIO(body)))[1:]
        elif "/rejects/" in "/" + item["Key"]:
            rejects += [json.loads(line) for line in body.splitlines()]
    return sorted(rows, key=lambda r: int(r[0])), sorted(rejects, key=lambda r: r["row"])


def test_a_killed_processing_job_is_resumed_by_the_next_job_of_its_execution(s3: dict[str, str],
                                                                             tmp_path: Path) -> None:
    client = _boto(s3)
    total = -(-ROWS // CHUNK)
    # First job: killed (SIGKILL) while blocked writing its log, with most chunks still to do.
    first = _job(tmp_path / "job", s3, "exec-1")
    assert first.stdout is not None
    fcntl.fcntl(first.stdout.fileno(), 1031, 4096)  # F_SETPIPE_SZ: the job blocks ~25 log lines ahead
    lines: list[bytes] = []
    while sum(b'"batch_chunk"' in line for line in lines) < 3:
        lines.append(first.stdout.readline())
        assert lines[-1], (b"".join(lines), first.stderr.read() if first.stderr else "")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL
    manifest = json.loads((tmp_path / "job" / "output" / "manifest.json").read_text())
    recorded = sorted(int(i) for i in manifest["done"]["0"])
    assert 3 <= len(recorded) < total // 2 and not manifest["complete"]
    _upload(client, tmp_path / "job" / "output", "exec-1")
    # One recorded chunk's upload never happened: it must be scored again, not skipped.
    lost = recorded[1]
    client.delete_object(Bucket="scores", Key=f"{PREFIX}exec-1/predictions/000-day/{lost:06d}.csv")

    # Second job of the same execution: a fresh disk, the input downloaded again (a new mtime).
    shutil.rmtree(tmp_path / "job")
    second = _job(tmp_path / "job", s3, "exec-1")
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, (out + err).decode()
    events = _events(out)
    (resume,) = [e for e in events if e["event"] == "batch_resume"]
    assert resume == {"event": "batch_resume", "prefix": f"s3://scores/{PREFIX}exec-1/",
                      "chunks_done": len(recorded) - 1}
    skipped = sorted(e["chunk"] for e in events if e["event"] == "batch_chunk" and e["skipped"])
    scored = sorted(e["chunk"] for e in events if e["event"] == "batch_chunk" and not e["skipped"])
    assert skipped == [i for i in recorded if i != lost]
    assert scored == sorted(set(range(total)) - set(skipped))
    done = events[-1]
    assert done["event"] == "batch_done" and done["chunks_skipped"] == len(skipped)
    assert done["chunks_scored"] == total - len(skipped)
    _upload(client, tmp_path / "job" / "output", "exec-1")

    # The prefix now holds every row once, exactly what one uninterrupted run gives.
    reference = _job(tmp_path / "ref", s3, "ref")
    _, err = reference.communicate(timeout=120)
    assert reference.returncode == 0, err.decode()
    _upload(client, tmp_path / "ref" / "output", "ref")
    resumed_rows, resumed_rejects = _scores(client, f"{PREFIX}exec-1/")
    want_rows, want_rejects = _scores(client, f"{PREFIX}ref/")
    assert len(resumed_rows) + len(resumed_rejects) == ROWS
    assert resumed_rows == want_rows
    assert [(r["row"], r["reason"]) for r in resumed_rejects] == [(r["row"], r["reason"]) for r in want_rejects]
    final = json.loads(client.get_object(Bucket="scores", Key=f"{PREFIX}exec-1/manifest.json")["Body"].read())
    assert final["complete"] and final["totals"] == {"rows": len(want_rows), "rejects": len(want_rejects)}


def test_changed_inputs_or_a_foreign_prefix_are_refused(s3: dict[str, str], tmp_path: Path) -> None:
    client = _boto(s3)
    client.put_object(Bucket="scores", Key=f"{PREFIX}exec-2/manifest.json",
                      Body=json.dumps({"done": {}, "inputs_sha256": ["0" * 64]}).encode())
    job = _job(tmp_path / "job", s3, "exec-2")
    out, _ = job.communicate(timeout=120)
    assert job.returncode == 2
    assert "not the bytes the run under" in _events(out)[-1]["error"]
    # Outside the job's prefix the role may not read; a bad signature is refused.
    role = _boto(s3, "processing")
    role.put_object(Bucket="scores", Key=f"{PREFIX}exec-2/x", Body=b"")  # the role may write here only
    with pytest.raises(Exception, match="AccessDenied"):
        role.put_object(Bucket="scores", Key="other/x", Body=b"")
    client.put_object(Bucket="scores", Key="other/x", Body=b"")
    with pytest.raises(S3Error, match=r"GET s3://scores/other/x: HTTP 403 AccessDenied"):
        S3Client.from_env(s3).get("scores", "other/x")
    with pytest.raises(S3Error, match=r"HTTP 403 SignatureDoesNotMatch"):
        list(S3Client.from_env({**s3, "AWS_SECRET_ACCESS_KEY": "wrong"}).list("scores", PREFIX))


class _CredentialsHandler(BaseHTTPRequestHandler):
    body = b""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        ok = self.headers.get("Authorization") == "container-token" and self.path == "/creds"
        data = self.body if ok else b"{}"
        self.send_response(200 if ok else 403)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_container_credentials_endpoint_and_uri_parsing(s3: dict[str, str]) -> None:
    _CredentialsHandler.body = json.dumps({"AccessKeyId": s3["AWS_ACCESS_KEY_ID"],
                                           "SecretAccessKey": s3["AWS_SECRET_ACCESS_KEY"]}).encode()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CredentialsHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {"AWS_REGION": "eu-west-1", "AWS_ENDPOINT_URL": s3["AWS_ENDPOINT_URL"],
               "AWS_CONTAINER_CREDENTIALS_FULL_URI": f"http://127.0.0.1:{server.server_address[1]}/creds",
               "AWS_CONTAINER_AUTHORIZATION_TOKEN": "container-token"}
        assert credentials(env).access_key == s3["AWS_ACCESS_KEY_ID"]
        _boto(s3).put_object(Bucket="scores", Key=f"{PREFIX}x/a b+c.csv", Body=b"1")
        client = S3Client.from_env(env)
        assert list(client.list("scores", f"{PREFIX}x/")) == [f"{PREFIX}x/a b+c.csv"]
        assert client.get("scores", f"{PREFIX}x/a b+c.csv") == b"1"
        with pytest.raises(S3Error, match="gave no credentials"):
            credentials({**env, "AWS_CONTAINER_AUTHORIZATION_TOKEN": "stolen"})
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(S3Error, match="no AWS credentials"):
        credentials({})
    assert split_uri("s3://scores/iris/x") == ("scores", "iris/x/")
    with pytest.raises(S3Error, match="not an s3://"):
        split_uri("gs://scores/iris/")
