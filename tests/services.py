"""Real servers on 127.0.0.1 for the cluster-path tests, each started by the test and stopped after it:
an S3-compatible object store (moto's server, with AWS-style authentication), PostgreSQL (Debian's
server binaries, a throwaway data directory) and vlpet-dashboard (optuna-dashboard on a study)."""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.ray_nodes import free_port


def wait_for_port(port: int, proc: subprocess.Popen, log: Path, timeout_s: float = 60) -> None:
    """Until 127.0.0.1:`port` accepts connections; a server that exits first fails the test with its log."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


class S3Server:
    """moto's S3-compatible server on 127.0.0.1 that checks credentials like S3: requests must be signed
    with an access key it issued (`env`), so missing or wrong credentials are refused. `bucket` exists."""

    bucket = "vlpet-test-bucket"

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.env: dict[str, str] = {}

    def start(self) -> S3Server:
        # moto authenticates every request after the first three: those create the user, its key and policy
        # its request log goes to a file: a pipe nobody reads would fill up and stall the server
        self.log = Path(tempfile.mkstemp(prefix="vlpet-moto-", suffix=".log")[1])
        with open(self.log, "w") as out:  # the server keeps its own descriptor
            self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                                          str(self.port)], env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"},
                                         stdout=out, stderr=subprocess.STDOUT)
        wait_for_port(self.port, self.proc, self.log)
        import boto3

        anyone = {"endpoint_url": self.endpoint, "region_name": "us-east-1", "aws_access_key_id": "none",
                  "aws_secret_access_key": "none"}
        iam = boto3.client("iam", **anyone)
        iam.create_user(UserName="vlpet")
        key = iam.create_access_key(UserName="vlpet")["AccessKey"]
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        iam.put_user_policy(UserName="vlpet", PolicyName="s3", PolicyDocument=json.dumps(policy))
        self.env = {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
                    "AWS_ENDPOINT_URL": self.endpoint, "AWS_DEFAULT_REGION": "us-east-1",
                    "AWS_EC2_METADATA_DISABLED": "true"}
        self.client().create_bucket(Bucket=self.bucket)
        return self

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"])

    def keys(self, prefix: str) -> list[str]:
        """The objects under `prefix`, without the empty directory markers that pyarrow writes."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []) if not o["Key"].endswith("/"))

    def read(self, key: str) -> bytes:
        return self.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.unlink(missing_ok=True)


def postgres_bin(name: str) -> str:
    """A PostgreSQL server program: on PATH, else in Debian's versioned directory."""
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (Debian: apt-get install postgresql; `make test` "
                           f"installs it)")
    return found


class PostgresServer:
    """A PostgreSQL server on 127.0.0.1 with a throwaway data directory and one database: trust
    authentication, or with `password` the user `postgres` behind SCRAM, the password given to clients in
    `env` (PGPASSWORD, which libpq reads) and never in the URL. As root it runs as the `postgres` user (the
    server refuses root)."""

    def __init__(self, password: str | None = None) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="vlpet-pg-"))
        self.url = f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"
        self.password = password
        self.env = {"PGPASSWORD": password} if password else {}

    def _as_server_user(self, *cmd: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else list(cmd)

    def start(self) -> PostgresServer:
        data, auth = self.dir / "data", ["-A", "trust"]
        if self.password:  # read by initdb, which runs as the server's user
            (self.dir / "pwfile").write_text(self.password + "\n")
            auth = ["-A", "scram-sha-256", "--pwfile", str(self.dir / "pwfile")]
        if os.geteuid() == 0:
            for path in self.dir.iterdir():
                shutil.chown(path, "postgres")
            shutil.chown(self.dir, "postgres")
        subprocess.run(self._as_server_user(postgres_bin("initdb"), "-D", str(data), "-U", "postgres", *auth),
                       check=True, capture_output=True, timeout=120)
        self.log = self.dir / "server.log"
        server = self._as_server_user(postgres_bin("postgres"), "-D", str(data), "-p", str(self.port), "-c",
                                      "listen_addresses=127.0.0.1", "-k", str(self.dir))
        with open(self.log, "w") as out:  # the server keeps its own descriptor
            self.proc = subprocess.Popen(server, stdout=out, stderr=subprocess.STDOUT)
        wait_for_port(self.port, self.proc, self.log)
        return self

    def stop(self) -> None:
        self.proc.terminate()  # postgres's smart shutdown
        self.proc.wait(timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def dashboard(study_dir: Path, env: dict | None = None) -> Iterator[tuple[list[dict], subprocess.Popen]]:
    """`vlpet-dashboard study_dir` on a free loopback port: yields the study summaries it serves (read from
    its /api/studies once it answers, within 60 s) and the process (its output on stdout); stopped after."""
    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).parent / "vlpet-dashboard"), str(study_dir), "--port",
                               str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, **(env or {})})
    server.port = port
    try:
        deadline, studies = time.time() + 60, None
        while time.time() < deadline and studies is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as answer:
                    studies = json.load(answer)["study_summaries"]
            except OSError:
                assert server.poll() is None, server.stdout.read()
                time.sleep(0.5)
        assert studies is not None, "the dashboard did not answer within 60 s"
        yield studies, server
    finally:
        server.terminate()
        server.wait(timeout=30)


class MlflowServer:
    """`mlflow server` on 127.0.0.1 with a throwaway SQLite backend and artifact directory."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="vlpet-mlflow-"))
        self.uri = f"http://127.0.0.1:{self.port}"

    def start(self) -> MlflowServer:
        self.log = self.dir / "server.log"
        command = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port",
                   str(self.port), "--workers", "1", "--backend-store-uri", f"sqlite:///{self.dir / 'mlflow.db'}",
                   "--default-artifact-root", str(self.dir / "artifacts")]
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for_port(self.port, self.proc, self.log, timeout_s=120)
        return self

    def stop(self) -> None:
        os.killpg(self.proc.pid, 15)  # the server and its uvicorn worker
        self.proc.wait(timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)
