"""A real S3-compatible server for tests: moto's standalone server, run as a
subprocess on 127.0.0.1 with authentication switched on.

Moto accepts any credentials until told otherwise.  ``s3_server()`` starts it
open, creates an IAM user with an access key and an ``s3:*`` policy, then posts
``0`` to ``/moto-api/reset-auth`` (moto's own switch, the runtime form of the
``INITIAL_NO_AUTH_ACTION_COUNT`` variable): from then on every request is
checked, a wrong secret gets ``SignatureDoesNotMatch`` and an unknown key
``InvalidAccessKeyId``.

Run as a script, this module *is* the server: ``moto.server.main`` with one fix.
Moto verifies a signature against ``flask.request.url``, where werkzeug has
percent-decoded the query string (``delimiter=%2F`` becomes ``delimiter=/``),
so with authentication on every listing (ListObjectsV2 with ``delimiter=/``)
fails with SignatureDoesNotMatch (getmoto/moto#5948).  The fix verifies against
the raw query string as it came over the wire.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REGION = "us-east-1"
S3_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}


@dataclass(frozen=True)
class S3Server:
    """A running server and the one access key it accepts."""

    endpoint_url: str
    key: str
    secret: str
    log: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def env(self) -> dict[str, str]:
        """Variables for a child process, ``{**os.environ, **server.env}``: botocore,
        and so s3fs and zarr's ``s3://`` URLs, then reach this server with this key
        and no other config (the parent's environment must not set AWS_PROFILE or
        AWS_SESSION_TOKEN)."""
        return {
            "AWS_ACCESS_KEY_ID": self.key,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": self.endpoint_url,  # botocore >= 1.31; enough on its own
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,  # else an inherited one would win
            "AWS_CONFIG_FILE": os.devnull,  # nothing from ~/.aws
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    @property
    def storage_options(self) -> dict[str, Any]:
        """fsspec/s3fs options (``zarr.open_group(..., storage_options=...)``)."""
        return {"key": self.key, "secret": self.secret, "client_kwargs": {"endpoint_url": self.endpoint_url}}

    def client(self, service: str = "s3", **kwargs: Any) -> Any:
        """A boto3 client of this server, signing with this key."""
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=self.key,
            aws_secret_access_key=self.secret,
            **kwargs,
        )

    def make_bucket(self, name: str) -> str:
        """Create bucket ``name``; returns ``s3://name``."""
        self.client().create_bucket(Bucket=name)
        return f"s3://{name}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def _start_auth(endpoint_url: str) -> tuple[str, str]:
    """While moto is still open: an IAM user allowed s3:*, its access key; then auth on."""
    import boto3

    iam = boto3.client(
        "iam", endpoint_url=endpoint_url, region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x"
    )
    iam.create_user(UserName="tester")
    iam.put_user_policy(UserName="tester", PolicyName="s3-all", PolicyDocument=json.dumps(S3_ALL))
    key = iam.create_access_key(UserName="tester")["AccessKey"]
    # the body is the number of unauthenticated calls still allowed; not form data
    req = urllib.request.Request(
        f"{endpoint_url}/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert json.load(r)["status"] == "ok"
    return key["AccessKeyId"], key["SecretAccessKey"]


@contextlib.contextmanager
def s3_server(timeout: float = 30.0) -> Iterator[S3Server]:
    """Start moto on a free port of 127.0.0.1 (log in a temp dir), wait at most
    ``timeout`` s for it to answer, turn authentication on, yield an ``S3Server``;
    stop the process at exit (the log goes with the temp dir)."""
    with tempfile.TemporaryDirectory(prefix="s3server-") as tmp:
        port = free_port()
        endpoint_url = f"http://127.0.0.1:{port}"
        log = Path(tmp) / "moto.log"
        env = {k: v for k, v in os.environ.items() if k != "INITIAL_NO_AUTH_ACTION_COUNT"}
        with log.open("w") as out:
            proc = subprocess.Popen(
                [sys.executable, __file__, "-H", "127.0.0.1", "-p", str(port)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            )  # fmt: skip
        try:
            t0 = time.monotonic()
            while not answers(f"{endpoint_url}/moto-api/"):
                if proc.poll() is not None or time.monotonic() - t0 > timeout:
                    raise RuntimeError(f"moto server did not start on {endpoint_url}:\n{log.read_text()[-3000:]}")
                time.sleep(0.1)
            key, secret = _start_auth(endpoint_url)
            yield S3Server(endpoint_url, key, secret, log, proc)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _serve(argv: list[str]) -> None:
    """``moto.server.main``, signatures checked against the raw query string."""
    from urllib.parse import urlsplit

    import flask
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.server import main

    check = ActionAuthenticatorMixin._authenticate_and_authorize_action

    def check_raw_query(self: Any, iam_request_cls: type, resource: str = "*") -> None:
        if not flask.has_request_context():
            return check(self, iam_request_cls, resource)
        decoded = self.uri
        self.uri = urlsplit(decoded)._replace(query=flask.request.query_string.decode()).geturl()
        try:
            return check(self, iam_request_cls, resource)
        finally:
            self.uri = decoded

    ActionAuthenticatorMixin._authenticate_and_authorize_action = check_raw_query  # type: ignore[method-assign]
    main(argv)


if __name__ == "__main__":
    _serve(sys.argv[1:])
