"""Output paths that would destroy data: the current folder, a folder holding files, an
input of the command, a symbolic link. Each is refused through the real CLI with one
line naming the path (rc 1, no traceback), and every file that existed is unchanged."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from _models import small_llama
from hm3.cli.main import main

RECIPE = (
    "merge_method: task_arithmetic\nbase_model: models/base\nmodels:\n"
    "  - model: models/expert\n    parameters: {weight: 0.5}\n"
)


def _save_model(folder: Path, seed: int) -> None:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    small_llama(seed).save_pretrained(folder)
    vocabulary = {"<unk>": 0, **{f"w{i}": i for i in range(1, 64)}}
    Tokenizer(WordLevel(vocabulary, unk_token="<unk>")).save(str(folder / "tokenizer.json"))


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    _save_model(root / "base", 0)
    _save_model(root / "expert", 1)
    return root


@pytest.fixture
def workdir(models, tmp_path, monkeypatch) -> Path:
    """A folder as a user has it: models, the recipe naming them relatively, notes; the cwd."""
    shutil.copytree(models, tmp_path / "models")
    (tmp_path / "ok.yaml").write_text(RECIPE)
    (tmp_path / "notes.txt").write_text("three weeks of notes\n")
    (tmp_path / "existing").mkdir()
    (tmp_path / "existing" / "precious.txt").write_text("irreplaceable\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def snapshot(root: Path) -> dict[str, bytes | str]:
    """Every file's bytes and every link's target under ``root`` (links are not followed)."""
    found = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            found[key] = "-> " + os.readlink(path)
        elif path.is_file():
            found[key] = path.read_bytes()
    return found


def refused(capsys, argv: list[str], *names: str) -> str:
    """Run ``hm3 argv``; it must fail with one line naming every one of ``names``."""
    assert main(argv) == 1
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "Traceback" not in captured.err and len(err.splitlines()) == 1, captured.err
    assert err.startswith(f"hm3 {argv[0]}: error: "), err
    for name in names:
        assert name in err, err
    return err


def assert_unchanged(root: Path, before: dict) -> None:
    assert snapshot(root) == before
    assert not [p for p in root.rglob("*.partial")], "temporary folder left behind"


def test_merge_into_the_current_folder_is_refused(workdir, capsys, reliability):
    before = snapshot(workdir)
    for argv in (["merge", "ok.yaml", "."], ["merge", "ok.yaml", ".", "--overwrite"]):
        err = refused(capsys, argv, ".: is the current folder")
        assert_unchanged(workdir, before)
    reliability(
        "data loss",
        "hm3 merge into . (the folder holding the models and notes)",
        saw=err,
        done="`hm3 merge ok.yaml .`, also with --overwrite",
        lost="nothing",
    )


def test_merge_into_a_folder_holding_files_is_refused(workdir, capsys, reliability):
    before = snapshot(workdir)
    err = refused(
        capsys, ["merge", "ok.yaml", "existing"], "existing: exists and is not empty", "--overwrite"
    )
    assert_unchanged(workdir, before)
    reliability(
        "data loss",
        "hm3 merge into an existing folder",
        saw=err,
        done="`hm3 merge ok.yaml existing` (existing/ holds precious.txt)",
        lost="nothing",
    )


def test_acquire_into_a_folder_holding_files_is_refused(workdir, capsys, reliability):
    before = snapshot(workdir)
    err = refused(
        capsys,
        ["acquire", "--path", "models/base", "existing"],
        "existing: exists and is not empty",
    )
    assert_unchanged(workdir, before)
    reliability(
        "data loss",
        "hm3 acquire into an existing folder",
        saw=err,
        done="`hm3 acquire --path models/base existing` (existing/ holds precious.txt)",
        lost="nothing",
    )


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]], ids=["plain", "overwrite"])
def test_merge_onto_its_own_base_model_is_refused(workdir, capsys, reliability, overwrite):
    before = snapshot(workdir)
    argv = ["merge", "ok.yaml", "models/base", *overwrite]
    err = refused(capsys, argv, "models/base: is the input models/base")
    assert_unchanged(workdir, before)
    reliability(
        "data loss",
        f"hm3 merge onto its own base_model{' with --overwrite' if overwrite else ''}",
        saw=err,
        done=f"`hm3 {' '.join(argv)}`",
        lost="nothing",
    )


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]], ids=["plain", "overwrite"])
def test_merge_onto_a_symlink_to_a_folder_is_refused(workdir, capsys, reliability, overwrite):
    (workdir / "link").symlink_to("existing")
    before = snapshot(workdir)
    err = refused(capsys, ["merge", "ok.yaml", "link", *overwrite], "link: is a symbolic link")
    assert_unchanged(workdir, before)
    reliability(
        "data loss",
        f"hm3 merge onto a symbolic link to a folder{' with --overwrite' if overwrite else ''}",
        saw=err,
        done="link -> existing/ (holding precious.txt)",
        lost="nothing",
    )


def test_merge_onto_a_symlink_to_a_file_is_refused(workdir, capsys, reliability):
    (workdir / "link").symlink_to("notes.txt")
    before = snapshot(workdir)
    err = refused(capsys, ["merge", "ok.yaml", "link", "--overwrite"], "link: is a symbolic link")
    assert_unchanged(workdir, before)
    reliability(
        "data loss",
        "hm3 merge onto a symbolic link to a file",
        saw=err,
        done="link -> notes.txt, with --overwrite",
        lost="nothing",
    )


@pytest.fixture
def results(tmp_path):
    from _suggest_results import write_results

    return write_results(tmp_path / "results")


def test_materialize_onto_a_dangling_symlink_is_refused(results, tmp_path, capsys, reliability):
    link = tmp_path / "chosen"
    link.symlink_to(tmp_path / "gone")
    before = snapshot(tmp_path)
    err = refused(
        capsys,
        ["suggest", "--weights", "math=1", "--results", str(results), "--materialize", str(link)],
        f"{link}: is a symbolic link",
    )
    assert_unchanged(tmp_path, before)
    reliability(
        "data loss",
        "hm3 suggest --materialize onto a dangling symbolic link",
        saw=err,
        done="chosen -> a path that does not exist",
        lost="nothing",
    )


def test_materialize_into_a_folder_needs_overwrite_and_never_replaces_the_results(
    results, tmp_path, capsys, reliability
):
    out = tmp_path / "chosen"
    out.mkdir()
    (out / "precious.txt").write_text("mine\n")
    before = snapshot(tmp_path)
    argv = ["suggest", "--weights", "math=1", "--results", str(results), "--materialize"]
    err = refused(capsys, [*argv, str(out)], f"{out}: exists and is not empty")
    refused(capsys, [*argv, str(results), "--overwrite"], f"{results}: is the input")
    refused(capsys, [*argv, str(results / "param"), "--overwrite"], "is inside the input")
    assert_unchanged(tmp_path, before)
    assert main([*argv, str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    reliability(
        "data loss",
        "hm3 suggest --materialize into an existing folder",
        saw=err,
        done="chosen/ holds precious.txt; then --overwrite onto results/ and results/param (refused) "
        "and onto chosen/ (replaced)",
        lost="nothing (chosen/ only when --overwrite was given)",
    )


@pytest.mark.parametrize(
    "case, out, overwrite, message",
    [
        (
            "an ancestor of the current folder",
            "..",
            True,
            "..: is an ancestor of the current folder",
        ),
        ("the root folder", "/", True, "/: is the root folder"),
        ("a regular file", "notes.txt", False, "notes.txt: exists and is not a folder"),
        ("a regular file", "notes.txt", True, "notes.txt: exists and is not a folder"),
        ("its own config file", "ok.yaml", True, "ok.yaml: is the input ok.yaml"),
        ("a folder holding its inputs", "models", True, "models: holds the input models/base"),
        (
            "a folder inside an input",
            "models/base/extra",
            True,
            "models/base/extra: is inside the input models/base",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_merge_onto_a_path_it_must_not_replace_is_refused(
    workdir, capsys, reliability, case, out, overwrite, message
):
    (workdir / "models" / "base" / "extra").mkdir()
    (workdir / "models" / "base" / "extra" / "notes.md").write_text("model notes\n")
    before = snapshot(workdir)
    argv = ["merge", "ok.yaml", out, *(["--overwrite"] if overwrite else [])]
    err = refused(capsys, argv, message)
    assert_unchanged(workdir, before)
    reliability(
        "data loss",
        f"hm3 merge onto {case}{' with --overwrite' if overwrite else ''}",
        saw=err,
        done=f"`hm3 {' '.join(argv)}`",
        lost="nothing",
    )


@pytest.mark.parametrize(
    "out, message",
    [
        ("models/base", "models/base: is the input models/base"),
        ("models", "models: holds the input models/base"),
        (".", ".: is the current folder"),
    ],
)
def test_acquire_never_replaces_its_source(workdir, capsys, reliability, out, message):
    before = snapshot(workdir)
    argv = ["acquire", "--path", "models/base", out, "--overwrite"]
    err = refused(capsys, argv, message)
    assert_unchanged(workdir, before)
    reliability(
        "data loss",
        f"hm3 acquire --overwrite onto {out}",
        saw=err,
        done=f"`hm3 {' '.join(argv)}`",
        lost="nothing",
    )


def _assert_complete_merge(folder: Path) -> None:
    from hm3.models.acquire import check_checkpoint

    check_checkpoint(folder)
    assert (folder / "mergekit_config.yml").is_file()


def test_overwrite_replaces_an_existing_folder_whole(workdir, capsys, reliability):
    assert main(["merge", "ok.yaml", "existing", "--overwrite", "--quiet"]) == 0
    assert not (workdir / "existing" / "precious.txt").exists()
    _assert_complete_merge(workdir / "existing")
    assert not [p for p in workdir.iterdir() if p.name.startswith(".existing")]
    assert main(["acquire", "--path", "models/expert", "existing", "--overwrite"]) == 0
    assert (workdir / "existing" / "SOURCE.json").is_file()
    assert not (workdir / "existing" / "mergekit_config.yml").exists()  # the merge it replaced
    reliability(
        "data loss",
        "hm3 merge and hm3 acquire --overwrite onto an existing folder",
        saw="replaced: the old files gone, the new checkpoint complete, no temporary folder left",
        done="`hm3 merge ok.yaml existing --overwrite`, then `hm3 acquire --path models/expert existing "
        "--overwrite`",
        lost="the old folder's content, as asked",
    )


def test_an_empty_folder_is_used_without_overwrite(workdir, capsys, reliability):
    (workdir / "empty").mkdir()
    assert main(["merge", "ok.yaml", "empty", "--quiet"]) == 0
    _assert_complete_merge(workdir / "empty")
    reliability(
        "data loss",
        "hm3 merge into an empty existing folder",
        saw="written (no --overwrite needed)",
        done="`hm3 merge ok.yaml empty` with empty/ made beforehand",
        lost="nothing",
    )


def test_a_failed_move_puts_the_old_folder_back(tmp_path, monkeypatch, reliability):
    """The old folder is renamed aside before the new one moves in; if that move fails the
    old one is renamed back, so the output is never simply gone."""
    from hm3.core.errors import HM3Error
    from hm3.core.io import atomic_dir

    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old\n")

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")

    with pytest.raises(HM3Error, match="could not move the finished output into place") as err:
        with atomic_dir(out, overwrite=True) as tmp:
            (tmp / "new.txt").write_text("new\n")
            monkeypatch.setattr(os, "replace", failing_replace)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and (
        out / "old.txt"
    ).read_text() == "old\n"
    reliability(
        "data loss",
        "replacing a folder fails at the final move",
        saw=err.value,
        done="os.replace made to fail with ENOSPC during atomic_dir(overwrite=True)",
        lost="nothing",
    )


def test_data_never_writes_a_split_over_a_folder_or_a_file_of_the_user(
    tmp_path, capsys, reliability
):
    out = tmp_path / "data"
    (out / "train.jsonl").mkdir(parents=True)
    (out / "train.jsonl" / "mine.txt").write_text("mine\n")
    sizes = ["--train", "20", "--search", "5", "--test", "5"]
    err = refused(
        capsys, ["data", "math", str(out), *sizes, "--overwrite"], "train.jsonl: is a folder"
    )
    shutil.rmtree(out / "train.jsonl")
    (out / "test.jsonl").write_text("my own test set\n")
    before = snapshot(tmp_path)
    err_file = refused(capsys, ["data", "math", str(out), *sizes], "test.jsonl: exists")
    assert_unchanged(tmp_path, before)
    assert main(["data", "math", str(out), *sizes, "--overwrite"]) == 0
    assert len((out / "test.jsonl").read_text().splitlines()) == 5
    reliability(
        "data loss",
        "hm3 data onto a folder named like a split",
        saw=err,
        done="train.jsonl/ is a folder holding a file, with --overwrite",
        lost="nothing",
    )
    reliability(
        "data loss",
        "hm3 data onto an existing split file",
        saw=err_file,
        done="test.jsonl already in the output folder",
        lost="nothing",
    )


def test_a_file_output_is_written_through_a_link_and_never_onto_a_folder(tmp_path, reliability):
    from hm3.core.errors import HM3Error
    from hm3.core.io import write_text

    (tmp_path / "real.yaml").write_text("old\n")
    (tmp_path / "config.yaml").symlink_to("real.yaml")
    write_text(tmp_path / "config.yaml", "new\n")  # as `hm3 pin config.yaml` does
    assert (tmp_path / "config.yaml").is_symlink() and (
        tmp_path / "real.yaml"
    ).read_text() == "new\n"
    (tmp_path / "dangling.json").symlink_to("nowhere.json")
    with pytest.raises(
        HM3Error, match="dangling.json: is a symbolic link to nowhere.json, which does not exist"
    ):
        write_text(tmp_path / "dangling.json", "{}")
    (tmp_path / "scores.json").mkdir()
    with pytest.raises(HM3Error, match="scores.json: is a folder, not a file") as err:
        write_text(tmp_path / "scores.json", "{}")  # as `hm3 evaluate --out scores.json` does
    assert (tmp_path / "scores.json").is_dir() and not list(tmp_path.glob("*.partial"))
    reliability(
        "data loss",
        "a file output (hm3 evaluate --out, hm3 pin) onto a folder or a link",
        saw=err.value,
        done="written onto a folder (refused), a dangling link (refused), a link to a file "
        "(written through, link kept)",
        lost="nothing",
    )
