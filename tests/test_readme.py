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
