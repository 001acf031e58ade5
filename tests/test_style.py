"""The tree stays formatted and lint-clean: `ruff check`, `ruff format --check` for Python,
`snakefmt --check` for the Snakefile and the rule files (settings in pyproject.toml).
Fix with `ruff format . && snakefmt Snakefile workflow/rules`."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from _paths import REPO

PYTHON_TREES = ["src", "tests", "workflow/scripts", "benchmarks", "scripts"]


def _run(*command: str) -> subprocess.CompletedProcess:
    tool = shutil.which(command[0])
    if tool is None:
        pytest.fail(f"{command[0]} is not installed: pip install -e '.[test]'")
    return subprocess.run(
        [tool, *command[1:]], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def test_ruff_check_is_clean():
    proc = _run("ruff", "check", *PYTHON_TREES)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-1000:]


def test_python_is_formatted():
    proc = _run("ruff", "format", "--check", *PYTHON_TREES)
    assert proc.returncode == 0, (
        "run `ruff format .`:\n" + proc.stdout[-4000:] + proc.stderr[-1000:]
    )


def test_rule_files_are_formatted():
    proc = _run("snakefmt", "--check", "Snakefile", "workflow/rules")
    assert proc.returncode == 0, (
        "run `snakefmt Snakefile workflow/rules`:\n" + proc.stdout[-4000:] + proc.stderr[-1000:]
    )
