"""The `hm3` command: every sub-command is registered, and `hm3 --help` stays instant
(no torch, transformers, lm-eval or pandas on its start-up path: the lazy imports'
reason for being)."""

from __future__ import annotations

import subprocess
import sys

COMMANDS = ("data", "acquire", "pin", "evaluate", "merge", "policy", "suggest")
HEAVY = ("torch", "transformers", "lm_eval", "pandas", "pymoo")


def test_help_lists_every_command_and_loads_nothing_heavy():
    probe = (
        "import sys, contextlib, io\n"
        "from hm3.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(out.getvalue())\n"
        f"print('HEAVY:', [m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    for command in COMMANDS:
        assert command in proc.stdout, f"`hm3 {command}` is missing from `hm3 --help`"
    assert "HEAVY: []" in proc.stdout, proc.stdout.splitlines()[-1]


def test_python_dash_m_runs_the_same_command():
    proc = subprocess.run(
        [sys.executable, "-m", "hm3.cli", "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and "COMMAND" in proc.stdout, proc.stderr
