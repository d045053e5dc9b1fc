import pickle

import pytest

from dfractal_dask.cli import main
from dfractal_dask.location import Location, LocationError, as_location, parse_storage_options


def test_plain_paths_become_absolute_urls_stay_whole(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert as_location("m.zarr") == Location(str(tmp_path / "m.zarr"))
    assert as_location(tmp_path / "a" / ".." / "b.zarr").url == str(tmp_path / "b.zarr")
    assert as_location("file://rel.zarr").url == str(tmp_path / "rel.zarr")
    s3 = as_location("s3://bucket/deep/m.zarr/", {"anon": True})
    assert (s3.url, s3.protocol, s3.is_local, s3.name) == ("s3://bucket/deep/m.zarr", "s3", False, "m.zarr")
    assert s3.with_suffix(".png") == "m.png" and s3.child("x").url == "s3://bucket/deep/m.zarr/x"
    # it travels to workers whole, storage options included
    again = pickle.loads(pickle.dumps(s3))
    assert again == s3 and again.storage_options == {"anon": True}


@pytest.mark.parametrize(
    ("target", "options", "exc", "words"),
    [
        ("gs://bucket/m.zarr", None, LocationError, 'pip install "dfractal_dask[gcs]"'),
        ("az://container/m.zarr", None, LocationError, 'pip install "dfractal_dask[azure]"'),
        ("nosuchscheme://x/m.zarr", None, LocationError, "unknown storage scheme nosuchscheme://"),
        ("s3://", None, ValueError, "names no bucket"),
        ("", None, ValueError, "must not be empty"),
        (42, None, TypeError, "store must be a path or a URL"),
        ("m.zarr", {"anon": True}, ValueError, "storage_options are for URLs"),
        ("s3://b/m.zarr", "anon=true", TypeError, "storage_options must be a dict"),
    ],
)
def test_bad_locations_are_named(target, options, exc, words):
    with pytest.raises(exc, match=words.replace("[", r"\[").replace("]", r"\]")):
        as_location(target, options)


def test_storage_options_from_the_command_line():
    opts = parse_storage_options(["anon=true", "endpoint_url=http://127.0.0.1:9000", 'client_kwargs={"a": 1}'])
    assert opts == {"anon": True, "endpoint_url": "http://127.0.0.1:9000", "client_kwargs": {"a": 1}}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_storage_options(["novalue"])


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["render", "--store", "gs://bucket/m.zarr"], 'pip install "dfractal_dask[gcs]"'),
        (["render", "--store", ""], "store must not be empty"),
        (["zoom", "--to-span", "0.1", "--store", " "], "store must not be empty"),
        (["recolor", "az://c/m.zarr"], 'pip install "dfractal_dask[azure]"'),
        (["info", "gs://bucket/m.zarr"], 'pip install "dfractal_dask[gcs]"'),
        (["render", "--storage-option", "anon=true"], "--storage-option is for URLs"),  # (storage_options)
        (["render", "--store", "s3://b/m.zarr", "--storage-option", "oops"], "KEY=VALUE"),
        (["explore", "--save-dir", "gs://bucket/saves"], 'pip install "dfractal_dask[gcs]"'),
    ],
)
def test_the_cli_says_which_extra_to_install(argv, words, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # nothing written, no cluster started
