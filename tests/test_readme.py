"""The README's two set-up commands stay at the top, and CI runs the test one."""

import contextlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands():
    text = (ROOT / "README.md").read_text()
    head = text[: text.index("## The seed's commands")]
    return re.findall(r"```bash\n(.+?)\n```", head)


def test_two_setup_commands_at_the_top():
    install_render, install_test = _commands()
    assert install_render.startswith("pip install -e .") and "dfractal render" in install_render
    assert install_test.startswith("pip install -e ") and "pytest" in install_test


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert any(line.startswith(_commands()[1]) for line in ci.splitlines())


def test_every_dfractal_command_in_the_readme_parses():
    """A command a reader copies from the README is one the CLI accepts."""
    import shlex

    from dfractal_dask.cli.app import build_parser, join_negative_values

    text = (ROOT / "README.md").read_text()
    lines = [line.split("  #")[0].strip() for block in re.findall(r"```bash\n(.+?)\n```", text, re.S)
             for line in block.splitlines()]  # fmt: skip
    commands = [shlex.split(line.split("&&")[-1]) for line in lines if "dfractal " in line]
    commands = [c[c.index("dfractal") + 1 :] for c in commands if "dfractal" in c]
    assert len(commands) > 10 and any("--fractal" in c for c in commands)
    parser = build_parser()
    for argv in commands:
        parser.parse_args(join_negative_values(argv))  # exits (fails the test) on a bad one


def test_the_object_storage_example_runs_as_written(tmp_path):
    """The README's S3 block, run by bash in an empty folder (its port swapped
    for a free one): a moto server, a render into it, info, recolor."""
    import os
    import signal
    import socket
    import subprocess

    text = (ROOT / "README.md").read_text()
    block = next(b for b in re.findall(r"```bash\n(.+?)\n```", text, re.S) if "moto_server" in b)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    lines = [line for line in block.replace(":9000", f":{port}").replace("-p 9000", f"-p {port}").splitlines()
             if not line.startswith("pip install")]  # installed already (the test extra)  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    p = subprocess.Popen(["bash", "-e", "-c", "\n".join(lines)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
    try:
        out, _ = p.communicate(timeout=300)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)  # the server too, whatever happened
    assert p.returncode == 0, out
    assert "verified: every chunk of the 8 done blocks matches its record" in out
    assert (tmp_path / "m.png").stat().st_size > 0 and (tmp_path / "m-viridis.png").stat().st_size > 0
    assert not (tmp_path / "s3:").exists()
