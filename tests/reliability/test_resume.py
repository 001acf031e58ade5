"""The pieces behind resuming after a kill: stale Snakemake locks, leftover partial
outputs and the pause points the interruption tests kill at."""

import json
import os
import socket
import subprocess
import sys

import pytest

from hm3.core.errors import HM3Error
from hm3.core.faults import pause_point
from hm3.core.io import atomic_dir, remove_dead_partials
from hm3.core.resume import OWNERS, claim_locks, clear_stale_locks, start_time


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _locks(state, *names):
    (state / "locks").mkdir(parents=True, exist_ok=True)
    for name in names:
        (state / "locks" / name).write_text("results/x\n")


def test_locks_of_a_killed_run_are_removed_and_named(tmp_path, capsys, reliability):
    state = tmp_path / ".snakemake"
    _locks(state, "0.input.lock", "0.output.lock")
    owner = {"host": socket.gethostname(), "pid": _dead_pid()}
    (state / OWNERS).write_text(json.dumps({"0.input.lock": owner, "0.output.lock": owner}))
    assert clear_stale_locks(state) == ["0.input.lock", "0.output.lock"]
    assert not list((state / "locks").iterdir())
    message = capsys.readouterr().err
    assert f"pid {owner['pid']}" in message
    reliability(
        "interruption",
        "stale Snakemake lock of a killed run",
        saw=message,
        done="lock files owned by a dead pid on this host",
    )


def test_locks_of_a_live_run_another_host_or_no_record_are_kept(tmp_path):
    state = tmp_path / ".snakemake"
    _locks(state, "0.input.lock", "1.input.lock", "2.input.lock")
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        table = {
            "0.input.lock": {"host": "elsewhere", "pid": _dead_pid()},
            "1.input.lock": {
                "host": socket.gethostname(),
                "pid": live.pid,
                "started": start_time(live.pid),
            },
        }
        (state / OWNERS).write_text(json.dumps(table))
        assert clear_stale_locks(state) == []
        assert len(list((state / "locks").iterdir())) == 3
    finally:
        live.kill()


def test_a_reused_pid_counts_as_dead(tmp_path):
    """The pid exists, but the process started at another time than the recorded owner."""
    state = tmp_path / ".snakemake"
    _locks(state, "0.input.lock")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        owner = {
            "host": socket.gethostname(),
            "pid": other.pid,
            "started": start_time(other.pid) - 1,
        }
        (state / OWNERS).write_text(json.dumps({"0.input.lock": owner}))
        assert clear_stale_locks(state) == ["0.input.lock"]
    finally:
        other.kill()


def test_claiming_records_this_process_for_unowned_locks_only(tmp_path):
    state = tmp_path / ".snakemake"
    _locks(state, "0.input.lock", "0.output.lock")
    (state / OWNERS).write_text(
        json.dumps(
            {"gone.lock": {"host": "h", "pid": 1}, "0.output.lock": {"host": "elsewhere", "pid": 1}}
        )
    )
    assert claim_locks(state) == ["0.input.lock"]
    table = json.loads((state / OWNERS).read_text())
    assert table["0.input.lock"]["pid"] == os.getpid()
    assert table["0.input.lock"]["started"] == start_time(os.getpid())
    assert table["0.output.lock"]["host"] == "elsewhere" and "gone.lock" not in table


def test_nothing_to_do_without_locks(tmp_path):
    assert clear_stale_locks(tmp_path / ".snakemake") == []


def test_partial_output_of_a_killed_writer_is_removed_by_the_next(tmp_path, reliability):
    host = socket.gethostname()
    dead = tmp_path / f".model.{_dead_pid()}@{host}.x1y2.partial"
    elsewhere = tmp_path / f".model.{_dead_pid()}@not-{host}.x1y2.partial"
    mine = tmp_path / f".model.{os.getpid()}@{host}.x1y2.partial"
    other_output = tmp_path / f".models.{_dead_pid()}@{host}.x1y2.partial"
    for path in (dead, elsewhere, mine, other_output):
        path.mkdir()
        (path / "model-00001-of-00002.safetensors").write_bytes(b"half")
    with atomic_dir(tmp_path / "model") as tmp:
        (tmp / "config.json").write_text("{}")
    assert not dead.exists()
    assert elsewhere.exists() and mine.exists() and other_output.exists()
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["config.json"]
    assert remove_dead_partials(tmp_path / "model") == []
    reliability(
        "interruption",
        "half-written export left by a SIGKILLed writer",
        saw="(nothing: removed silently by the next writer of the same output)",
        done="partial directory owned by a dead pid beside the output",
    )


def test_pause_point_is_inert_by_default(monkeypatch):
    monkeypatch.delenv("HM3_TEST_PAUSE_AT", raising=False)
    pause_point("export.shard")


def test_pause_point_announces_itself_then_gives_up(monkeypatch, tmp_path):
    marker = tmp_path / "paused"
    monkeypatch.setenv("HM3_TEST_PAUSE_AT", "somewhere:2")
    monkeypatch.setenv("HM3_TEST_PAUSE_MARKER", str(marker))
    monkeypatch.setenv("HM3_TEST_PAUSE_SECONDS", "0.2")
    pause_point("elsewhere")
    pause_point("somewhere")  # the first time: not yet
    assert not marker.exists()
    with pytest.raises(HM3Error, match="never interrupted"):
        pause_point("somewhere")
    assert marker.read_text().strip() == str(os.getpid())
