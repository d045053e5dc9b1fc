"""tests/s3server.py: a real moto server on 127.0.0.1 that checks credentials."""

import pytest

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

import s3fs
from s3server import S3Server, s3_server


@pytest.fixture(scope="module")
def s3():
    with s3_server() as server:
        server.make_bucket("roundtrip")
        yield server


def _fs(server: S3Server, **kw) -> s3fs.S3FileSystem:
    """A fresh filesystem (no instance cache) that does not retry."""
    opts = {**server.storage_options, **kw}
    return s3fs.S3FileSystem(**opts, config_kwargs={"retries": {"total_max_attempts": 1}}, skip_instance_cache=True)


def test_correct_credentials_round_trip_bytes(s3, tmp_path):
    fs = _fs(s3)
    fs.pipe("roundtrip/a/b.bin", b"\x00chunk\xff")
    assert fs.cat("roundtrip/a/b.bin") == b"\x00chunk\xff"
    assert fs.ls("roundtrip/a/", detail=False) == ["roundtrip/a/b.bin"]  # delimiter=/ is signed right
    fs.get_file("roundtrip/a/b.bin", tmp_path / "b.bin")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00chunk\xff"


def test_wrong_secret_is_refused(s3):
    bad = _fs(s3, secret="not-the-secret")
    with pytest.raises(PermissionError, match="signature we calculated does not match"):
        bad.pipe("roundtrip/intruder", b"x")
    with pytest.raises(PermissionError):
        bad.cat("roundtrip/a/b.bin")  # a HEAD first: a bare 403 "Forbidden"
    assert not _fs(s3).exists("roundtrip/intruder")


def test_missing_bucket_raises(s3):
    fs = _fs(s3)
    with pytest.raises(FileNotFoundError, match="bucket does not exist"):
        fs.pipe("no-such-bucket/a", b"x")
    with pytest.raises(FileNotFoundError, match="bucket does not exist"):
        fs.ls("no-such-bucket")
