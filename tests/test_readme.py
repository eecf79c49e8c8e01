"""The README is a front door: short, and its tour runs as written, command by command."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _tour() -> list[str]:
    text = README.read_text()
    section = text.split("## A tour", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def test_the_readme_stays_short():
    assert README.stat().st_size < 12_000


def test_the_first_lines_are_the_two_setup_commands():
    lines = README.read_text().splitlines()
    commands = lines[lines.index("```bash") + 1:lines.index("```bash") + 3]
    assert "qaev search" in commands[0] and "pytest" in commands[1]
    assert (ROOT / ".ci" / "run").read_text().rstrip().endswith(commands[1].split("   #")[0].strip())


def test_every_tour_command_runs_in_order(tmp_path):
    """Each command of the tour, in a fresh folder, with the interpreter running the tests
    standing in for the clone's .venv (where the first command installs qaev)."""
    bin_dir = Path(sys.executable).parent
    commands = _tour()
    assert commands and commands[-1].startswith(".venv/bin/python")
    for command in commands:
        argv = shlex.split(command)
        argv[0] = str(bin_dir / Path(argv[0]).name) if argv[0].startswith(".venv/bin/") else argv[0]
        done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{command}\n{done.stderr[-2000:]}"
    assert (tmp_path / "tour.onnx").is_file() and (tmp_path / "runs" / "tour" / "report.html").is_file()
    assert "recommended" in done.stdout  # the last command prints the summary table
