"""The README's two set-up commands stay at the top, and CI runs the test one."""

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

    from dfractal_dask.cli import _join_negative_values, build_parser

    text = (ROOT / "README.md").read_text()
    lines = [line.split("  #")[0].strip() for block in re.findall(r"```bash\n(.+?)\n```", text, re.S)
             for line in block.splitlines()]  # fmt: skip
    commands = [shlex.split(line.split("&&")[-1]) for line in lines if "dfractal " in line]
    commands = [c[c.index("dfractal") + 1 :] for c in commands if "dfractal" in c]
    assert len(commands) > 10 and any("--fractal" in c for c in commands)
    parser = build_parser()
    for argv in commands:
        parser.parse_args(_join_negative_values(argv))  # exits (fails the test) on a bad one
