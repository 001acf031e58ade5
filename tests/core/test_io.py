"""hm3.core.io's mirror of a run's files into another run's folder (the seeds protocol)."""

import os

import pytest

from hm3.core.errors import HM3Error
from hm3.core.io import mirror_links


def test_mirror_links_hard_links_files_and_keeps_folder_times(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results/models/a").mkdir(parents=True)
    (tmp_path / "results/models/a/w.bin").write_bytes(b"123")
    (tmp_path / "results/data.txt").write_text("d")
    os.utime(tmp_path / "results/models/a", ns=(10**18, 10**18))
    # a half-written leftover at the destination is replaced whole
    (tmp_path / "run/results/models/a").mkdir(parents=True)
    (tmp_path / "run/results/models/a/stale").write_text("x")
    assert mirror_links(["results/models/a", "results/data.txt"], "run") == 2
    copied = tmp_path / "run/results/models/a"
    assert sorted(p.name for p in copied.iterdir()) == ["w.bin"]
    assert (copied / "w.bin").stat().st_ino == (tmp_path / "results/models/a/w.bin").stat().st_ino
    assert copied.stat().st_mtime_ns == 10**18
    assert (tmp_path / "run/results/data.txt").read_text() == "d"
    assert not [p for p in (tmp_path / "run/results/models").iterdir() if p.name != "a"]
    with pytest.raises(HM3Error, match="not an existing path"):
        mirror_links(["results/missing"], "run")
