"""A real cluster: `dask scheduler` and two `dask worker` processes on
127.0.0.1, rendered to through `dfractal render --scheduler`."""

import json
import subprocess

import numpy as np
import pytest
from daskprocs import BIN, dask_processes, wait_for
from PIL import Image

from dfractal_dask import View, colorize, fractal_dataset, open_render, places

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def real_cluster(tmp_path_factory):
    with dask_processes(tmp_path_factory.mktemp("cluster")) as (address, _):
        yield address


def test_dfractal_render_on_a_real_scheduler_and_two_workers(real_cluster, tmp_path):
    out = tmp_path / "img" / "real.png"
    cmd = [
        BIN / "dfractal",
        "render",
        "--scheduler",
        real_cluster,
        "--width",
        "80",
        "--height",
        "60",
        "--smoothness",
        "2",
        "--iters",
        "300",
        "--palette",
        "Plan9",
        "--step",
        "600",
        "--outfile",
        out,
        "--chunk-rows",
        "8",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "on 2 workers" in done.stderr and "100.0%" in done.stderr

    ds = open_render(tmp_path / "img" / "real.zarr")
    assert int(ds.block_done.sum()) == ds.attrs["n_blocks"] == 15
    view = View.from_attrs(ds.attrs)
    assert view == View(-0.00275, 0.78912, 0.125689, 80, 60, 2)
    # the workers' counts equal a local computation of the same view
    local = fractal_dataset(view, 300).compute(scheduler="sync")
    assert np.array_equal(ds.iterations.values, local.iterations.values)
    assert np.array_equal(ds.norm.values, local.norm.values)
    # and the PNG is the store coloured by the seed's rule
    with Image.open(out) as im:
        assert im.size == (80, 60)
        png = np.asarray(im)
    assert np.array_equal(png, colorize(local, "Plan9", 600))
    assert len(np.unique(png.reshape(-1, 4), axis=0)) > 20


def test_unreachable_scheduler_exits_2(tmp_path):
    done = subprocess.run(
        [BIN / "dfractal", "render", "--scheduler", "tcp://127.0.0.1:9", "--outfile", tmp_path / "x.png"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "cannot reach dask scheduler" in done.stderr
    assert not (tmp_path / "x.zarr").exists()


def test_recolor_on_the_real_cluster(real_cluster, tmp_path):
    render_cmd = [BIN / "dfractal", "render", "--scheduler", real_cluster, "--width", "40", "--height", "30",
                  "--smoothness", "2", "--iters", "200", "--outfile", tmp_path / "r.png", "--quiet"]  # fmt: skip
    assert subprocess.run(render_cmd, capture_output=True, timeout=300).returncode == 0
    out = tmp_path / "smooth.png"
    cmd = [BIN / "dfractal", "recolor", tmp_path / "r.zarr", "--scheduler", real_cluster, "--palette", "Magma256",
           "--mode", "smooth", "--outfile", out]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with Image.open(out) as im:
        assert np.array_equal(np.asarray(im), colorize(open_render(tmp_path / "r.zarr"), "Magma256", mode="smooth"))


def test_preloaded_plugin_reports_both_named_workers(real_cluster, tmp_path):
    import urllib.request

    from distributed import Client

    cmd = [BIN / "dfractal", "render", "--scheduler", real_cluster, "--width", "64", "--height", "64",
           "--smoothness", "2", "--iters", "300", "--chunk-rows", "4", "--outfile", tmp_path / "m.png",
           "--metrics", "--quiet"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    named = {line.split()[3] for line in lines if line.startswith("METRICS WORKER ")}
    assert named == {"w1", "w2"}  # every worker reports, by its --name
    # 32 blocks: a kernel, a store write and a picture piece (--overlap) each
    assert lines[-1].startswith("METRICS TOTAL tasks=96 rows=128 samples=16384 ")
    with Client(real_cluster, timeout="30s") as c:
        base = c.dashboard_link.rsplit("/status", 1)[0]
    with urllib.request.urlopen(base + "/fractal/data.json", timeout=10) as r:
        data = json.loads(r.read())
    assert data["blocks_done"] == 32 and {w["name"] for w in data["workers"].values()} == {"w1", "w2"}


# the branch point of the 1/3 limb, with more digits than float64 holds
DEEP_X, DEEP_Y = places.BRANCH_POINT


def test_deep_zoom_and_its_recolouring_on_the_real_cluster(real_cluster, tmp_path):
    """`dfractal zoom` past float64 on the real processes: the Orbit and the
    gmpy2-made reference cross process boundaries, both workers write frames,
    and the animation is the store coloured; then recoloured on the cluster."""
    from distributed import Client, get_task_stream

    from dfractal_dask.animation import color_frames
    from dfractal_dask.graph import zoom_dataset
    from dfractal_dask.store import open_zoom
    from dfractal_dask.view import zoom_views

    out = tmp_path / "z.png"  # an animated PNG: lossless, so compared exactly
    with Client(real_cluster, timeout="30s") as c, get_task_stream(c) as ts:  # records the other client's tasks
        cmd = [BIN / "dfractal", "zoom", "--scheduler", real_cluster, "--xpos", DEEP_X, "--ypos", DEEP_Y,
               "--span", "0.5", "--to-span", "1e-40", "--frames", "5", "--width", "24", "--height", "18",
               "--smoothness", "2", "--iters", "1200", "--chunk-rows", "12", "--mode", "histogram",
               "--outfile", out]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert "(3 by perturbation)" in done.stderr and "on 2 workers" in done.stderr
    stream = [t for t in ts.data if str(t["key"]).startswith("dfractal-")]
    # frames x blocks kernel calls on both workers, one reference orbit per deep frame
    kernel_workers = {t["worker"] for t in stream if str(t["key"]).startswith("dfractal-kernel-")}
    assert sum(str(t["key"]).startswith("dfractal-kernel-") for t in stream) == 5 * 3 and len(kernel_workers) == 2
    assert sum(str(t["key"]).startswith("dfractal-reference-") for t in stream) == 3
    ds = open_zoom(tmp_path / "z.zarr")
    views = zoom_views(View(DEEP_X, DEEP_Y, 0.5, 24, 18, 2), 5, 1e-40)
    assert list(ds.deep.values) == [v.deep for v in views] == [False, False, True, True, True]
    local = zoom_dataset(views, 1200, 12).compute(scheduler="sync")  # the same graph, in this process
    np.testing.assert_array_equal(ds.iterations.values, local.iterations.values)
    np.testing.assert_array_equal(ds.norm.values, local.norm.values)
    assert all(len(np.unique(f)) > 20 for f in ds.iterations.values)  # every frame has structure
    want = list(color_frames(local, "Hippi", mode="histogram"))
    with Image.open(out) as im:
        assert im.n_frames == 5 and im.size == (24, 18)
        for k in range(5):
            im.seek(k)
            assert np.array_equal(np.asarray(im.convert("RGBA")), want[k])
    # recoloured on the cluster into a GIF, nothing recomputed: GIF's 256-colour
    # palette holds each frame's colours to within quantisation
    gif = tmp_path / "z-magma.gif"
    cmd = [BIN / "dfractal", "recolor", tmp_path / "z.zarr", "--scheduler", real_cluster, "--palette", "Magma256",
           "--mode", "histogram", "--outfile", gif]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    want = list(color_frames(local, "Magma256", mode="histogram"))
    with Image.open(gif) as im:
        assert im.n_frames == 5
        for k in range(5):
            im.seek(k)
            diff = np.abs(np.asarray(im.convert("RGB"), int) - want[k][..., :3])
            assert diff.mean() < 2 and diff.max() <= 24


# -- what real clusters do to a render ---------------------------------------------------------------
# Long enough to be cut in the middle: a view half inside the set at a high iteration limit.
SLOW = ["--xpos", "-0.5", "--ypos", "0", "--escape-radius", "3", "--width", "200", "--height", "150",
        "--smoothness", "4", "--iters", "20000", "--chunk-rows", "8", "--palette", "Hippi"]  # fmt: skip
SLOW_VIEW, SLOW_ITERS = View(-0.5, 0.0, 3.0, 200, 150, 4), 20000


def _done_blocks(store) -> int:
    import zarr

    try:
        return int(np.asarray(zarr.open_group(str(store), mode="r")["block_done"][:]).sum())
    except Exception:  # not created yet
        return 0


@pytest.fixture(scope="module")
def slow_reference():
    """The undisturbed render of SLOW, computed here (threads, no cluster)."""
    return fractal_dataset(SLOW_VIEW, SLOW_ITERS, 8).compute()


@pytest.mark.cluster
def test_a_worker_killed_mid_render_loses_nothing(tmp_path, slow_reference):
    store, out = tmp_path / "k.zarr", tmp_path / "k.png"
    with dask_processes(tmp_path, worker_args=("--no-nanny",)) as (address, workers):
        client = subprocess.Popen([BIN / "dfractal", "render", "--scheduler", address, *SLOW, "--outfile", out,
                                   "--quiet"], stderr=subprocess.PIPE, text=True)  # fmt: skip
        wait_for(lambda: _done_blocks(store) >= 6, "the render to be under way", timeout=120)
        workers["w2"].kill()  # SIGKILL: no goodbye to the scheduler, its blocks in flight are lost
        assert workers["w2"].wait(timeout=10) == -9
        assert _done_blocks(store) < 75  # killed mid-render
        _, err = client.communicate(timeout=300)
    assert client.returncode == 0, err
    ds = open_render(store)
    assert int(ds.block_done.sum()) == ds.attrs["n_blocks"] == 75
    np.testing.assert_array_equal(ds.iterations.values, slow_reference.iterations.values)
    np.testing.assert_array_equal(ds.norm.values, slow_reference.norm.values)
    with Image.open(out) as im:
        np.testing.assert_array_equal(np.asarray(im), colorize(slow_reference, "Hippi", 6000))


def test_a_killed_client_leaves_a_store_that_resume_finishes(real_cluster, tmp_path, slow_reference):
    from distributed import Client

    store, out = tmp_path / "r.zarr", tmp_path / "r.png"
    argv = [BIN / "dfractal", "render", "--scheduler", real_cluster, *SLOW, "--outfile", out, "--store", store]
    client = subprocess.Popen([*argv, "--quiet"])
    wait_for(lambda: _done_blocks(store) >= 6, "the render to be under way", timeout=120)
    client.kill()  # SIGKILL: the client is gone, the scheduler drops its work
    client.wait(timeout=10)
    with Client(real_cluster, timeout="30s") as c:  # wait until the blocks in flight have landed
        wait_for(lambda: not c.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)), "an idle cluster")
    before = _done_blocks(store)
    assert 6 <= before < 75
    with pytest.raises(Exception, match="incomplete"):
        open_render(store)
    assert not out.exists()
    # without --resume the store is refused; with it, only the missing blocks are computed
    refused = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "already exists" in refused.stderr
    done = subprocess.run([*argv, "--resume", "--metrics"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{before} blocks were already done, {75 - before} computed now" in done.stderr
    total = next(line for line in done.stdout.splitlines() if line.startswith("METRICS TOTAL "))
    # a kernel and a write task per missing block, no more; and every block's picture piece (--overlap):
    # the resumed blocks are coloured from the store
    assert f" tasks={2 * (75 - before) + 75} " in total
    ds = open_render(store)
    np.testing.assert_array_equal(ds.iterations.values, slow_reference.iterations.values)
    np.testing.assert_array_equal(ds.norm.values, slow_reference.norm.values)
    with Image.open(out) as im:
        np.testing.assert_array_equal(np.asarray(im), colorize(slow_reference, "Hippi", 6000))
    # and a resume asked for another render is refused, the store untouched
    other = subprocess.run([*argv[:-4], "--iters", "100", "--outfile", out, "--store", store, "--resume"],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert other.returncode == 2 and "made for another render" in other.stderr
    assert int(open_render(store).block_done.sum()) == 75


def _certificates(tmp):
    """A CA, and a certificate for 127.0.0.1 signed by it (for scheduler, workers and client)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def cert(subject, issuer, key, sign_key, ca):
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
             .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
             .not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))  # fmt: skip
        if not ca:
            names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return b.sign(sign_key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dfractal test CA")])
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    files = {"ca": tmp / "ca.pem", "cert": tmp / "cert.pem", "key": tmp / "key.pem"}
    files["ca"].write_bytes(cert(ca_name, ca_name, ca_key, ca_key, True).public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(cert(name, ca_name, key, ca_key, False).public_bytes(serialization.Encoding.PEM))
    files["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))  # fmt: skip
    return files


@pytest.mark.cluster
def test_render_over_a_tls_cluster(tmp_path):
    from dfractal_dask.cluster import tls_security

    f = _certificates(tmp_path)
    tls = ["--tls-ca-file", str(f["ca"]), "--tls-cert", str(f["cert"]), "--tls-key", str(f["key"])]
    security = tls_security(f["ca"], f["cert"], f["key"])
    with dask_processes(tmp_path, scheduler_args=("--protocol", "tls", *tls), worker_args=tls,
                        security=security) as (address, _):  # fmt: skip
        assert address.startswith("tls://127.0.0.1:")
        out = tmp_path / "t.png"
        argv = [BIN / "dfractal", "render", "--scheduler", address, "--width", "40", "--height", "30",
                "--smoothness", "2", "--iters", "200", "--outfile", out, "--quiet"]  # fmt: skip
        # without the credentials the scheduler cannot be used: one line, exit 2
        plain = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert plain.returncode == 2 and plain.stderr.startswith("dfractal: error:"), plain.stderr
        done = subprocess.run([*argv, *tls], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        ds = open_render(tmp_path / "t.zarr")
        local = fractal_dataset(View(-0.00275, 0.78912, 0.125689, 40, 30, 2), 200).compute(scheduler="sync")
        np.testing.assert_array_equal(ds.iterations.values, local.iterations.values)
        # the API: a Security object
        from dfractal_dask import render

        ds = render(View(-0.5, 0.0, 3.0, 20, 15, 1), 50, client=address, security=security)
        local = fractal_dataset(View(-0.5, 0.0, 3.0, 20, 15, 1), 50).compute(scheduler="sync")
        np.testing.assert_array_equal(ds.iterations.values, local.iterations.values)
