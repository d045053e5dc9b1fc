"""Object storage against a hostile world (issue 28): a server that refuses
access, store URLs with a query string, a fragment or credentials in them, a
bucket deleted under a running render, and secrets, which must never reach a
message, a log, the store or a page.

The server is moto's standalone one, open (it takes any signed request,
whatever the credentials: a test's fake key and secret are accepted), with
one change made in its own process (:data:`SERVE`), so that it refuses as S3
refuses (``403 AccessDenied``; a HEAD's answer has no body, botocore reads
it as ``Forbidden``):

- an unsigned (anonymous) request for an object, as for a private bucket
  whose policy lets anyone list it (moto, with its authentication on,
  answers an unsigned request with a 500 instead);
- any request signed with an access key id starting ``DENIED``;
- any but a read (GET, HEAD) signed with one starting ``READONLY``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

from daskprocs import BIN, dask_processes, stop_process, wait_for
from s3server import answers, free_port

from dfractal_dask import View, fractal_dataset
from dfractal_dask import store as st
from dfractal_dask.graph import blocks, compute_block
from dfractal_dask.location import AccessDenied, Location, as_location

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
REGION = "us-east-1"
SMALL = ["--width", "48", "--height", "36", "--smoothness", "2", "--iters", "300", "--chunk-rows", "12"]
# long enough to be under way when its bucket is deleted: half inside the set, a high limit, 60 blocks
SLOW = ["--xpos", "-0.5", "--ypos", "0", "--escape-radius", "3", "--width", "160", "--height", "120",
        "--smoothness", "2", "--iters", "40000", "--chunk-rows", "4"]  # fmt: skip
ADVICE = "check the credentials in --storage-option or the environment"

#: moto's server, refusing as S3 does (see the module's docstring); run as ``python -c SERVE -H ... -p ...``
SERVE = r"""
import re, sys
import flask
from moto.core.authorization import ActionAuthenticatorMixin
from moto.s3.exceptions import S3AccessDeniedError
from moto.server import main

check = ActionAuthenticatorMixin._authenticate_and_authorize_action

def refuse(self, iam_request_cls, resource="*"):
    if flask.has_request_context():
        request = flask.request
        signed = re.search(r"Credential=([^/,\s]+)", request.headers.get("Authorization", ""))
        key = signed.group(1) if signed else request.args.get("X-Amz-Credential", "").split("/")[0]
        on_object = "/" in request.path.strip("/")
        if ((not key and on_object) or key.startswith("DENIED")
                or (key.startswith("READONLY") and request.method not in ("GET", "HEAD"))):
            raise S3AccessDeniedError()
    return check(self, iam_request_cls, resource)

ActionAuthenticatorMixin._authenticate_and_authorize_action = refuse
main(sys.argv[1:])
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The endpoint URL of the refusing moto server (:data:`SERVE`)."""
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k != "INITIAL_NO_AUTH_ACTION_COUNT"}
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-c", SERVE, "-H", "127.0.0.1", "-p", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)  # fmt: skip
    try:
        wait_for(lambda: proc.poll() is not None or answers(f"{url}/moto-api/"), "the moto server", timeout=60)
        assert proc.poll() is None, log.read_text()[-3000:]
        yield url
    finally:
        stop_process(proc)


def _s3(url: str, key: str = "AKIAQ28TESTER0000001"):
    import boto3

    return boto3.client("s3", endpoint_url=url, region_name=REGION, aws_access_key_id=key,
                        aws_secret_access_key="any-secret-will-do")  # fmt: skip


def _bucket(url: str, name: str) -> str:
    _s3(url).create_bucket(Bucket=name)
    return name


def _objects(url: str, bucket: str) -> dict[str, bytes]:
    """Every object in ``bucket``, by key: its bytes."""
    s3, found = _s3(url), {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            found[item["Key"]] = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    return found


def _env(**extra: str) -> dict[str, str]:
    """A child's environment with no AWS credentials or configuration of the machine's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull, AWS_EC2_METADATA_DISABLED="true",
        AWS_DEFAULT_REGION=REGION,
    )  # fmt: skip
    env.update(extra)
    return env


def _dfractal(*argv, cwd, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([BIN / "dfractal", *map(str, argv)], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd, env=env or _env())  # fmt: skip


def _options(url: str, key: str, secret: str = "q28-not-a-secret") -> list[str]:
    return ["--storage-option", f"key={key}", "--storage-option", f"secret={secret}",
            "--storage-option", f"endpoint_url={url}"]  # fmt: skip


def _one_line(done: subprocess.CompletedProcess) -> str:
    """The single error line of a run that ended in exit 2, without its newline."""
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    return done.stderr.rstrip("\n")


def _dead_scheduler() -> str:
    # a port where nothing listens: a command that reached for its cluster would say so
    return f"tcp://127.0.0.1:{free_port()}"


# -- 1. a server that denies access --------------------------------------------


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("anonymous", "Forbidden"),  # the bucket may be listed, its objects not: past the bucket's check
        ("denied key", "Forbidden"),  # the bucket itself is refused
        ("read-only key", "Access Denied"),  # read, then refused the first write (the store's lease)
    ],
)
def test_a_server_that_denies_access_names_the_store_before_any_render(server, tmp_path, case, reason):
    bucket = _bucket(server, f"q28-denied-{case.replace(' ', '-')}")
    url = f"s3://{bucket}/q.zarr"
    options = {
        "anonymous": ["--storage-option", "anon=true", "--storage-option", f"endpoint_url={server}"],
        "denied key": _options(server, "DENIEDQ28KEY00000001"),
        "read-only key": _options(server, "READONLYQ28KEY000001"),
    }[case]
    want = f"dfractal: error: access denied to the store {url} ({reason}): {ADVICE}"
    render = _dfractal("render", "--scheduler", _dead_scheduler(), *SMALL, "--store", url, *options,
                       "--outfile", "q.png", cwd=tmp_path)  # fmt: skip
    assert _one_line(render) == want
    assert render.stdout == ""  # refused before anything was said of a render
    if case != "read-only key":  # (a read-only key reads: info says there is no store)
        info = _dfractal("info", url, *options, cwd=tmp_path)
        assert _one_line(info) == want
    assert _objects(server, bucket) == {}  # nothing written: no lease, no store
    assert list(tmp_path.iterdir()) == []


def test_a_worker_refused_its_writes_says_so_and_the_error_reaches_the_client(server):
    """On a worker, a PermissionError of the storage while writing a block is
    access denied (not a full disk); it is raised with nothing chained to it,
    so distributed carries it to the client whole (the StoreError or the
    AccessDenied, not a bare Exception holding its text)."""
    from distributed.core import error_message
    from distributed.protocol import pickle

    bucket = _bucket(server, "q28-worker-refused")
    view = View(-0.5, 0.0, 3.0, 32, 24, 1)
    writer = as_location(
        f"s3://{bucket}/w.zarr", {"key": "AKIAQ28WRITER0000001", "secret": "s", "endpoint_url": server}
    )
    st.create_store(writer, fractal_dataset(view, 50, 8), 3, store_id="q28")
    block = blocks(view, 8)[0]
    it, norm, _ = compute_block(view, 50, block)
    reader = as_location(writer.url, {"key": "READONLYQ28KEY000001", "secret": "s", "endpoint_url": server})
    with pytest.raises(AccessDenied) as caught:
        st.write_block(reader, block, it, norm, store_id="q28")
    assert str(caught.value) == (
        f"access denied to the store s3://{bucket}/w.zarr (Access Denied): check the credentials in "
        "storage_options or the environment"
    )
    again = pickle.loads(error_message(caught.value)["exception"].data)  # as a worker sends it
    assert type(again) is AccessDenied and str(again) == str(caught.value)
    assert not [k for k in _objects(server, bucket) if k.startswith(("w.zarr/iterations/c/", "w.zarr/norm/c/"))]


# -- 2. query strings and fragments --------------------------------------------

REFUSED_URLS = [
    ("s3://bucket/q.zarr?versionId=1", "s3://bucket/q.zarr?..."),
    ("s3://bucket/q.zarr#v1", "s3://bucket/q.zarr#..."),
    ("s3://bucket/q.zarr/?versionId=1", "s3://bucket/q.zarr/?..."),
    ("gs://bucket/q.zarr?generation=7", "gs://bucket/q.zarr?..."),  # (before its missing backend)
    ("memory://q.zarr?x=1", "memory://q.zarr?..."),
    ("https://host.example/q.zarr?X-Amz-Signature=Q28SIG", "https://host.example/q.zarr?..."),
    ("az://container/q.zarr?sv=2024&sig=Q28SIG", "az://container/q.zarr?..."),
    ("file:///tmp/q.zarr#frag", "file:///tmp/q.zarr#..."),
]


@pytest.mark.parametrize(("url", "shown"), REFUSED_URLS)
def test_a_query_string_or_fragment_is_refused_in_one_line(url, shown):
    with pytest.raises(ValueError) as caught:
        as_location(url, name="store")
    assert str(caught.value) == (
        f"store {shown}: a query string (?...) or fragment (#...) is not supported in a store URL; "
        "name the store by its path alone"
    )
    assert "Q28SIG" not in str(caught.value)  # a signed URL's query is a secret: never echoed


def test_a_plain_path_may_hold_question_marks_and_hashes(tmp_path):
    assert as_location(str(tmp_path / "a?b#c.zarr")).url == str(tmp_path / "a?b#c.zarr")


@pytest.mark.parametrize(("command", "url"), [("render", "s3://bucket/q.zarr?versionId=1"),
                                              ("render", "s3://bucket/q.zarr#v1"),
                                              ("zoom", "az://c/q.zarr?sig=Q28SIG"),
                                              ("info", "s3://bucket/q.zarr?versionId=1")])  # fmt: skip
def test_the_cli_refuses_a_query_string_before_any_cluster(tmp_path, command, url):
    """--scheduler names a port where nothing listens: had the command reached
    for its cluster first, the line would be about the scheduler."""
    argv = {"render": ["render", "--scheduler", _dead_scheduler(), *SMALL, "--store", url, "--outfile", "q.png"],
            "zoom": ["zoom", "--scheduler", _dead_scheduler(), "--to-span", "0.1", "--store", url],
            "info": ["info", url]}[command]  # fmt: skip
    line = _one_line(_dfractal(*argv, cwd=tmp_path, timeout=120))
    base = url.split("?")[0].split("#")[0]
    assert line.startswith(f"dfractal: error: store {base}") and "query string (?...) or fragment (#...)" in line
    assert "is not supported in a store URL" in line and "Q28SIG" not in line and "scheduler" not in line
    assert list(tmp_path.iterdir()) == []


# -- 3. a bucket deleted mid-render -------------------------------------------


def _delete_bucket(url: str, bucket: str) -> None:
    """Every object, then the bucket (again while a write in flight puts one back)."""
    s3 = _s3(url)
    for _ in range(200):
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys]})
        try:
            s3.delete_bucket(Bucket=bucket)
            return
        except s3.exceptions.ClientError as exc:
            if exc.response["Error"]["Code"] != "BucketNotEmpty":
                raise
    raise AssertionError(f"could not delete the bucket {bucket}")


def test_the_store_seen_then_gone_has_vanished_one_never_seen_is_out_of_reach(server):
    """check_identity, in this process: a store it never saw is a set-up mistake
    (every worker must reach it); one it saw, gone since (its bucket with it),
    or whose arrays are left without their group, vanished while written."""
    bucket = _bucket(server, "q28-identity")
    options = {"key": "AKIAQ28IDENTITY00001", "secret": "s", "endpoint_url": server}
    view = View(-0.5, 0.0, 3.0, 32, 24, 1)
    seen, left = as_location(f"s3://{bucket}/seen.zarr", options), as_location(f"s3://{bucket}/left.zarr", options)
    for loc in (seen, left):
        st.create_store(loc, fractal_dataset(view, 50, 8), 3, store_id=loc.name)
    with pytest.raises(st.StoreError) as never:
        st.check_identity(as_location(f"s3://{bucket}/never.zarr", options), "never.zarr")
    assert str(never.value) == (
        f"this process cannot see the store s3://{bucket}/never.zarr (no Zarr group there): every worker must "
        "reach the location the client writes (a shared filesystem or object storage)"
    )
    _s3(server).delete_object(Bucket=bucket, Key="left.zarr/zarr.json")  # never checked here: its arrays remain
    with pytest.raises(st.StoreError, match=r"the store s3://q28-identity/left\.zarr vanished while being written"):
        st.check_identity(left, "left.zarr")
    st.check_identity(seen, "seen.zarr")  # seen here
    _delete_bucket(server, bucket)
    with pytest.raises(st.StoreError) as gone:
        st.check_identity(seen, "seen.zarr")
    assert str(gone.value) == (
        f"the store s3://{bucket}/seen.zarr vanished while being written (this process: no Zarr group there "
        "any more); nothing more was written into it and nothing of it was read back"
    )


@pytest.mark.cluster
def test_a_bucket_deleted_mid_render_is_said_to_have_vanished(server, tmp_path):
    """A real `dask worker` writes the blocks of a render into S3 (its
    credentials in the graph); the bucket is deleted, objects and all, once
    the first block is in it.  The render ends in one line saying the store
    vanished, not that the worker cannot reach it; exit 2, no picture."""
    bucket = _bucket(server, "q28-vanish")
    url, secret = f"s3://{bucket}/q.zarr", f"q28-secret-{uuid.uuid4().hex}"
    with dask_processes(tmp_path, names=("w1",), env=_env()) as (address, _):
        client = subprocess.Popen(
            [BIN / "dfractal", "render", "--scheduler", address, *SLOW, "--store", url,
             *_options(server, "AKIAQ28VANISH0000001", secret), "--outfile", tmp_path / "v.png", "-q"],
            cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            s3 = _s3(server)

            def first_block() -> bool:
                if client.poll() is not None:
                    raise AssertionError(f"the render ended first: {client.communicate()}")
                return bool(s3.list_objects_v2(Bucket=bucket, Prefix="q.zarr/iterations/c/").get("KeyCount"))

            wait_for(first_block, "a first block in the bucket", timeout=240)
            _delete_bucket(server, bucket)
            out, err = client.communicate(timeout=300)
        finally:
            if client.poll() is None:
                client.kill()
                client.wait()
    assert client.returncode == 2, (out, err)
    assert err.count("\n") == 1 and "Traceback" not in err, err
    # (the worker's check of the store, or of its lease, whichever comes first: both are gone)
    assert err.startswith(f"dfractal: error: the store {url} vanished while being written ("), err
    assert err.endswith("); nothing more was written into it and nothing of it was read back\n")
    assert "every worker must reach" not in err
    assert not (tmp_path / "v.png").exists()
    # its secret is in no output nor in any log (distributed's logs name failed tasks)
    logs = "".join(p.read_text(errors="replace") for p in tmp_path.glob("*.log"))
    assert "Compute Failed" in logs or "vanished" in logs  # (the logs are the ones that saw the failure)
    for text in (out, err, logs):
        assert secret not in text


# -- 4. secrets ----------------------------------------------------------------


def test_a_location_shows_its_options_names_never_their_values():
    secret = f"q28-secret-{uuid.uuid4().hex}"
    loc = as_location("s3://bucket/m.zarr", {"key": "AKIAQ28REPR000000001", "secret": secret,
                                              "client_kwargs": {"endpoint_url": "http://127.0.0.1:9"}})  # fmt: skip
    assert repr(loc) == "Location('s3://bucket/m.zarr', storage_options=<key=***, secret=***, client_kwargs=***>)"
    assert str(loc) == "s3://bucket/m.zarr" and f"{loc}" == "s3://bucket/m.zarr"
    assert repr(as_location("s3://bucket/m.zarr")) == "Location('s3://bucket/m.zarr')"
    # (a Location made directly, past as_location's refusal: its URL's credentials masked too)
    direct = Location(f"s3://AKIAQ28:{secret}@bucket/m.zarr", {"secret": secret})
    assert str(direct) == "s3://***@bucket/m.zarr" and secret not in repr(direct)
    assert loc.redact(f"signature of {secret} and http://u:{secret}@h/x") == "signature of *** and http://***@h/x"
    denied = loc.denied(PermissionError(f"refused {secret}"))
    assert str(denied) == (
        "access denied to the store s3://bucket/m.zarr (refused ***): check the credentials in storage_options "
        "or the environment"
    )


@pytest.mark.parametrize(
    "url",
    ["s3://AKIAQ28USERKEY00001:Q28PASS@bucket/x.zarr", "https://user:Q28PASS@host.example/x.zarr",
     "s3://Q28PASS@bucket/x.zarr", "sftp://me:Q28PASS@host.example/x.zarr"],
)  # fmt: skip
def test_credentials_in_a_url_are_refused_and_never_shown(url):
    with pytest.raises(ValueError) as caught:
        as_location(url, name="store")
    message = str(caught.value)
    scheme, host_path = url.split("://")[0], url.split("@", 1)[1]
    assert message == (
        f"store {scheme}://***@{host_path}: credentials in the URL are not supported (they would be shown wherever "
        "the store is named); give them in storage_options or the environment"
    )
    assert "Q28PASS" not in message and "AKIAQ28USERKEY00001" not in message and "user:" not in message


def _no_secret(what: str, text: str | bytes, *secrets: str) -> None:
    for secret in secrets:
        found = secret.encode() in text if isinstance(text, bytes) else secret in text
        assert not found, f"{secret!r} is in {what}"


@pytest.mark.cluster
def test_no_secret_reaches_an_output_a_log_the_store_or_a_page(server, tmp_path):
    """Storage options with a distinctive key and secret (moto takes any), on a
    real cluster whose workers know them only from the graph; then the same
    secret in the environment of commands on their own embedded cluster.
    Neither is in anything the commands print, in any log, in any object of
    the bucket (keys, documents, attributes, chunks), or in the dashboard's
    pages."""
    import json

    from distributed import Client

    key, secret = "AKIAQ28SECRETKEY0001", f"q28-secret-{uuid.uuid4().hex}"
    bucket = _bucket(server, "q28-secrets")
    url = f"s3://{bucket}/s.zarr"
    options = _options(server, key, secret)
    runs: list[subprocess.CompletedProcess] = []
    with dask_processes(tmp_path, env=_env()) as (address, _):
        done = _dfractal("render", "--scheduler", address, *SMALL, "--store", url, *options, "--outfile", "s.png",
                         "--metrics", cwd=tmp_path)  # fmt: skip
        assert done.returncode == 0, done.stderr
        runs.append(done)
        info = _dfractal("info", url, *options, cwd=tmp_path)
        assert info.returncode == 0 and f"store: {url}" in info.stdout, info.stderr
        runs.append(info)
        bad = [  # each refused in one line
            ("info", "s3://q28-no-such-bucket/s.zarr", *options),
            ("render", "--scheduler", address, *SMALL, "--store", f"s3://{bucket}/d.zarr",
             *_options(server, "DENIEDQ28KEY00000001", secret), "--outfile", "d.png"),
            ("render", "--scheduler", address, *SMALL, "--store", f"s3://{key}:{secret}@{bucket}/u.zarr",
             "--outfile", "u.png"),
            ("render", "--scheduler", address, *SMALL, "--store", f"s3://{bucket}/o.zarr",
             "--storage-option", secret, "--outfile", "o.png"),  # (a value alone, its key forgotten)
            ("render", "--scheduler", address, *SMALL, "--store", f"s3://{bucket}/s.zarr", *options,
             "--outfile", "again.png"),  # exists: not overwritten
        ]  # fmt: skip
        for argv in bad:
            failed = _dfractal(*argv, cwd=tmp_path)
            _one_line(failed)
            runs.append(failed)
        with Client(address, timeout="30s") as c:
            pages = {}
            base = c.dashboard_link.rsplit("/status", 1)[0]
            for page in ("/fractal", "/fractal/data.json", "/info/main/workers.html"):
                with urllib.request.urlopen(base + page, timeout=30) as r:
                    pages[page] = r.read()
            assert json.loads(pages["/fractal/data.json"]).get("blocks_done") == 6  # the page of this render
            logs = json.dumps([c.get_scheduler_logs(), c.get_worker_logs()])
    for run in runs:
        _no_secret(f"the output of {run.args[1:3]}", run.stdout + run.stderr, secret, key)
    for page, body in pages.items():
        _no_secret(f"the dashboard's {page}", body, secret, key)
    _no_secret("the cluster's logs", logs, secret, key)
    for log in tmp_path.glob("*.log"):
        _no_secret(str(log), log.read_bytes(), secret, key)
    objects = _objects(server, bucket)
    assert "s.zarr/zarr.json" in objects and "s.zarr/iterations/c/0/0" in objects
    for name, data in objects.items():
        _no_secret(f"the object {name}", name.encode() + data, secret, key)

    # the environment's secret, on an embedded cluster (its workers inherit the environment)
    env_key, env_secret = "AKIAQ28ENVKEY0000001", f"q28-env-secret-{uuid.uuid4().hex}"
    env = _env(AWS_ACCESS_KEY_ID=env_key, AWS_SECRET_ACCESS_KEY=env_secret, AWS_ENDPOINT_URL=server,
               AWS_ENDPOINT_URL_S3=server)  # fmt: skip
    url = f"s3://{bucket}/e.zarr"
    runs = [_dfractal("render", *SMALL, "--store", url, "--outfile", "e.png", cwd=tmp_path, env=env)]
    assert runs[0].returncode == 0, runs[0].stderr
    runs.append(_dfractal("info", url, cwd=tmp_path, env=env))
    assert runs[-1].returncode == 0 and f"store: {url}" in runs[-1].stdout, runs[-1].stderr
    for argv, extra, words in [
        (("info", "s3://q28-no-such-bucket/e.zarr"), {}, "there is no bucket 'q28-no-such-bucket'"),
        (("render", *SMALL, "--store", f"s3://{bucket}/f.zarr", "--outfile", "f.png"),
         {"AWS_ACCESS_KEY_ID": "DENIEDQ28KEY00000001"}, f"access denied to the store s3://{bucket}/f.zarr"),
    ]:  # fmt: skip
        runs.append(_dfractal(*argv, cwd=tmp_path, env={**env, **extra}))
        assert words in _one_line(runs[-1])
    for run in runs:
        _no_secret(f"the output of {run.args[1:3]}", run.stdout + run.stderr, env_secret)
    for name, data in _objects(server, bucket).items():
        _no_secret(f"the object {name}", name.encode() + data, env_secret, secret)
