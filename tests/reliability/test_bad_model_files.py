"""Hostile or corrupt model folders (issue 19, cases 4 and 5): symlinks leading out of the
folder, a config promising more than the weights hold, tokenizer files that do not parse,
safetensors headers whose byte ranges lie. Each is refused through the real command line
(or the loader), in one line naming the file, before anything is allocated or written."""

from __future__ import annotations

import json
import os
import shutil
import struct
import time
from pathlib import Path

import pytest

from _models import small_llama
from _paths import REPO, SCHEMA
from hm3.cli.main import main
from hm3.core.errors import HM3Error

PASSWD = Path("/etc/passwd")
WORDS = [f"w{i}" for i in range(20)]


def _build(folder: Path, seed: int) -> Path:
    """A tiny Llama checkpoint with a real tokenizer (tokenizer.json, its config, special tokens)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(["<unk>", "<s>", "</s>", *WORDS])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    small_llama(seed, vocab_size=len(vocab), tie_word_embeddings=False).save_pretrained(folder)
    PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    ).save_pretrained(folder)
    (folder / "special_tokens_map.json").write_text(
        json.dumps({"unk_token": "<unk>", "bos_token": "<s>"})
    )
    return folder


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("pristine")
    return _build(root / "base", 0), _build(root / "expert", 1)


@pytest.fixture
def models(pristine, tmp_path):
    """Fresh copies of the base and the expert, for one test to spoil."""
    return tuple(Path(shutil.copytree(folder, tmp_path / folder.name)) for folder in pristine)


def _hm3(capsys, *argv) -> tuple[int, str, float]:
    """Run the CLI; its exit code, its one-line error and the seconds it took."""
    capsys.readouterr()
    started = time.perf_counter()
    rc = main([str(a) for a in argv])
    seconds = time.perf_counter() - started
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) <= 1, err
    return rc, err, seconds


def _acquire(capsys, source: Path, out: Path) -> tuple[int, str, float]:
    return _hm3(capsys, "acquire", "--path", source, out)


def _merge(capsys, base: Path, expert: Path, out: Path) -> tuple[int, str, float]:
    recipe = out.parent / "recipe.yaml"
    recipe.write_text(
        f"merge_method: task_arithmetic\nbase_model: {base}\n"
        f"models:\n  - model: {expert}\n    parameters: {{weight: 0.5}}\n"
    )
    return _hm3(capsys, "merge", "--quiet", recipe, out)


def _nothing_from_passwd(root: Path) -> bool:
    secret = PASSWD.read_bytes().splitlines()[0]
    return not any(
        secret in p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink()
    )


def _no_output(out: Path) -> bool:
    return not out.exists() and not list(out.parent.glob(f".{out.name}.*"))


# ------------------------------------------------------------------ case 4: symlinks
@pytest.mark.skipif(not PASSWD.is_file(), reason="needs /etc/passwd")
def test_a_link_to_etc_passwd_is_refused_by_acquire_and_merge(
    models, tmp_path, capsys, reliability
):
    base, expert = models
    link = base / "special_tokens_map.json"
    link.unlink()
    link.symlink_to(PASSWD)
    rc, acquired, _ = _acquire(capsys, base, tmp_path / "acquired")
    assert (
        rc == 1
        and "special_tokens_map.json: a symlink to /etc/passwd, outside the model folder"
        in acquired
    )
    rc, merged, _ = _merge(capsys, base, expert, tmp_path / "merged")
    assert rc == 1 and "special_tokens_map.json: a symlink to /etc/passwd" in merged
    assert _no_output(tmp_path / "acquired") and _no_output(tmp_path / "merged")
    assert _nothing_from_passwd(tmp_path)
    reliability(
        "untrusted models",
        "special_tokens_map.json a symlink to /etc/passwd",
        saw=acquired,
        done="hm3 acquire --path and hm3 merge on the folder; no output holds a line of the host file",
        count=2,
    )


def test_a_weight_shard_linked_from_outside_is_refused_everywhere(
    models, tmp_path, capsys, reliability
):
    from hm3.checkpoints.causal_lm import load_causal_lm

    base, expert = models
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shard = expert / "model.safetensors"
    shard.rename(elsewhere / shard.name)
    shard.symlink_to(elsewhere / shard.name)
    rc, acquired, _ = _acquire(capsys, expert, tmp_path / "acquired")
    assert rc == 1 and f"model.safetensors: a symlink to {elsewhere / shard.name}" in acquired
    rc, merged, _ = _merge(capsys, base, expert, tmp_path / "merged")
    assert rc == 1 and "model.safetensors: a symlink to" in merged
    with pytest.raises(
        HM3Error, match="model.safetensors: a symlink to .*outside the model folder"
    ):
        load_causal_lm(expert)
    assert _no_output(tmp_path / "acquired") and _no_output(tmp_path / "merged")
    reliability(
        "untrusted models",
        "weight shard a symlink to a file outside the model folder",
        saw=acquired,
        done="model.safetensors moved out and linked back (absolute link); acquire, merge, evaluation "
        "loader",
        count=3,
    )


def test_a_relative_link_escaping_with_dotdot_is_refused(models, tmp_path, capsys, reliability):
    base, _ = models
    outside = tmp_path / "other"
    outside.mkdir()
    shutil.copy(base / "tokenizer.json", outside / "tokenizer.json")
    (base / "tokenizer.json").unlink()
    (base / "tokenizer.json").symlink_to(Path("..") / "other" / "tokenizer.json")
    rc, err, _ = _acquire(capsys, base, tmp_path / "acquired")
    assert rc == 1 and f"tokenizer.json: a symlink to {outside / 'tokenizer.json'}, outside" in err
    assert _no_output(tmp_path / "acquired")
    reliability(
        "untrusted models",
        "tokenizer.json a relative symlink escaping with ../",
        saw=err,
        done="tokenizer.json -> ../other/tokenizer.json; hm3 acquire --path",
    )


def test_a_link_chain_is_judged_by_where_it_ends(models, tmp_path, capsys, reliability):
    base, expert = models
    (tmp_path / "outside.json").write_text((base / "generation_config.json").read_text())
    (base / "generation_config.json").unlink()
    (base / "hop.json").symlink_to("hop2.json")  # inside, inside, then out
    (base / "hop2.json").symlink_to(tmp_path / "outside.json")
    (base / "generation_config.json").symlink_to("hop.json")
    rc, acquired, _ = _acquire(capsys, base, tmp_path / "acquired")
    assert (
        rc == 1
        and f"a symlink to {tmp_path / 'outside.json'}, outside the model folder" in acquired
    )
    rc, merged, _ = _merge(capsys, base, expert, tmp_path / "merged")
    assert rc == 1 and "outside.json, outside the model folder" in merged
    assert _no_output(tmp_path / "acquired") and _no_output(tmp_path / "merged")
    reliability(
        "untrusted models",
        "symlink chain leading out of the model folder",
        saw=acquired,
        done="generation_config.json -> hop.json -> hop2.json -> a file outside; acquire and merge",
        count=2,
    )


def test_a_link_loop_is_named(models, tmp_path, capsys, reliability):
    base, _ = models
    (base / "loop_a.json").symlink_to("loop_b.json")
    (base / "loop_b.json").symlink_to("loop_a.json")
    rc, err, _ = _acquire(capsys, base, tmp_path / "acquired")
    assert rc == 1 and "loop_a.json: a symlink that cannot be followed" in err, err
    reliability(
        "untrusted models",
        "symlink loop in a model folder",
        saw=err,
        done="loop_a.json -> loop_b.json -> loop_a.json; hm3 acquire --path",
    )


def _hub_snapshot(root: Path, source: Path, repo: str = "models--org--tiny") -> Path:
    """``source`` laid out as the Hugging Face cache does: files are relative links to blobs."""
    snapshot = root / repo / "snapshots" / ("a" * 40)
    (root / repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for index, item in enumerate(sorted(source.iterdir())):
        blob = root / repo / "blobs" / f"{index:064x}"
        shutil.copy(item, blob)
        (snapshot / item.name).symlink_to(Path("..") / ".." / "blobs" / blob.name)
    return snapshot


def test_a_hub_cache_snapshot_of_blob_links_is_accepted(models, tmp_path, capsys, reliability):
    from hm3.evaluation.scorer import load_model

    base, expert = models
    snapshot = _hub_snapshot(tmp_path / "hub", base)
    rc, err, _ = _acquire(capsys, snapshot, tmp_path / "acquired")
    assert rc == 0, err
    copied = sorted((tmp_path / "acquired").iterdir())
    assert copied and not any(p.is_symlink() for p in copied)  # the resolved files, never a link
    assert (tmp_path / "acquired" / "model.safetensors").read_bytes() == (
        base / "model.safetensors"
    ).read_bytes()
    rc, err, _ = _merge(capsys, snapshot, expert, tmp_path / "merged")
    assert rc == 0, err
    assert not any(p.is_symlink() for p in (tmp_path / "merged").iterdir())
    load_model(snapshot)
    # a snapshot's link into another cache repository is refused like any other
    stray = _hub_snapshot(tmp_path / "hub", expert, "models--evil--other")
    (snapshot / "tokenizer_config.json").unlink()
    (snapshot / "tokenizer_config.json").symlink_to(stray / "tokenizer_config.json")
    rc, err, _ = _acquire(capsys, snapshot, tmp_path / "acquired2")
    assert rc == 1 and "models--evil--other/blobs/" in err and "outside the model folder" in err
    reliability(
        "untrusted models",
        "Hugging Face cache snapshot (files link to ../../blobs)",
        saw="accepted; acquired as regular files; a link into another cache repository: " + err,
        done="snapshot folder as --path, as a merge base, through the evaluation loader",
        count=4,
    )


# ------------------------------------------------------------------ case 5: config.json
def _set_config(model: Path, **changes) -> None:
    path = model / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_a_config_promising_100000_layers_is_refused_in_under_a_second(
    models, tmp_path, capsys, reliability
):
    base, _ = models
    _set_config(base, num_hidden_layers=100000, vocab_size=1000000000)
    rc, acquired, seconds = _acquire(capsys, base, tmp_path / "acquired")
    assert rc == 1 and seconds < 1, (acquired, seconds)
    assert (
        f"{base / 'config.json'}: num_hidden_layers is 100000, not a whole number from 1 to 4096"
        in acquired
    )
    rc, evaluated, seconds = _hm3(
        capsys,
        "evaluate",
        base,
        "--config",
        REPO / "config" / "config.yaml",
        "--schema",
        SCHEMA,
        "--data-dir",
        tmp_path / "data",
    )
    assert rc == 1 and seconds < 1 and "config.json: num_hidden_layers is 100000" in evaluated, (
        evaluated,
        seconds,
    )
    from hm3.checkpoints.causal_lm import load_causal_lm

    started = time.perf_counter()
    with pytest.raises(HM3Error, match="config.json: num_hidden_layers is 100000"):
        load_causal_lm(base)
    assert time.perf_counter() - started < 1
    assert _no_output(tmp_path / "acquired")
    reliability(
        "bad input",
        "config.json with 100000 layers and a vocabulary of 1e9",
        saw=acquired,
        done="hm3 acquire and hm3 evaluate (was: 232 s of allocation, then MemoryError); each under 1 s",
        count=3,
    )


@pytest.mark.parametrize(
    "key,value",
    [
        ("hidden_size", -16),
        ("num_hidden_layers", 0),
        ("vocab_size", 23.0),
        ("num_attention_heads", "2"),
        ("intermediate_size", True),
        ("max_position_embeddings", [32]),
    ],
    ids=["negative", "zero", "float", "string", "boolean", "list"],
)
def test_a_size_that_is_no_positive_whole_number_is_refused(
    models, tmp_path, capsys, reliability, key, value
):
    base, _ = models
    _set_config(base, **{key: value})
    rc, err, _ = _acquire(capsys, base, tmp_path / "acquired")
    assert rc == 1 and f"config.json: {key} is {json.dumps(value)}, not a whole number" in err, err
    assert _no_output(tmp_path / "acquired")
    reliability(
        "bad input",
        "config.json size that is not a positive whole number",
        saw=err,
        done=f"{key}: {json.dumps(value)}; hm3 acquire",
    )


@pytest.mark.parametrize(
    "changes,expected",
    [
        ({"num_hidden_layers": 4}, "num_hidden_layers is 4 but the weights hold 2 decoder layers"),
        (
            {"vocab_size": 100000},
            "vocab_size 100000 x hidden size 16 does not match the weights' "
            "model.embed_tokens.weight [23, 16]",
        ),
        ({"intermediate_size": 1 << 20}, "its sizes imply about"),
    ],
    ids=["layers", "vocabulary", "intermediate"],
)
def test_a_config_promising_more_than_the_weights_is_refused(
    models, tmp_path, capsys, reliability, changes, expected
):
    from hm3.checkpoints.causal_lm import load_causal_lm

    base, expert = models
    _set_config(base, **changes)
    rc, acquired, _ = _acquire(capsys, base, tmp_path / "acquired")
    assert rc == 1 and f"config.json: {expected}" in acquired, acquired
    rc, merged, _ = _merge(capsys, base, expert, tmp_path / "merged")
    assert rc == 1 and expected in merged, merged
    with pytest.raises(HM3Error, match="config.json: "):
        load_causal_lm(base)
    assert _no_output(tmp_path / "acquired") and _no_output(tmp_path / "merged")
    reliability(
        "bad input",
        "config.json sizes the weights do not hold",
        saw=acquired,
        done=f"{json.dumps(changes)} on a 2-layer, 23-token model; acquire, merge, evaluation loader",
        count=3,
    )


@pytest.mark.parametrize(
    "text,expected",
    [
        ('{"num_hidden_layers": 2,', "config.json: not valid JSON (Expecting property name"),
        ("[1, 2, 3]", "config.json: holds a JSON array, not the object expected"),
    ],
    ids=["not-json", "a-list"],
)
def test_a_config_that_is_no_json_object_is_named(
    models, tmp_path, capsys, reliability, text, expected
):
    base, expert = models
    (base / "config.json").write_text(text)
    rc, acquired, _ = _acquire(capsys, base, tmp_path / "acquired")
    assert rc == 1 and expected in acquired, acquired
    rc, merged, _ = _merge(capsys, base, expert, tmp_path / "merged")
    assert rc == 1 and expected in merged, merged
    rc, evaluated, _ = _hm3(
        capsys,
        "evaluate",
        base,
        "--config",
        REPO / "config" / "config.yaml",
        "--schema",
        SCHEMA,
        "--data-dir",
        tmp_path / "data",
    )
    assert rc == 1 and expected in evaluated, evaluated
    reliability(
        "bad input",
        "config.json that is not a JSON object",
        saw=acquired,
        done=f"config.json = {text!r}; acquire, merge, evaluate",
        count=3,
    )


# ------------------------------------------------------------------ case 5: tokenizer files
@pytest.mark.parametrize(
    "text,expected",
    [
        (
            '{"version": "1.0", "model": {"type": "WordLevel", "vocab": {"<unk>": 0',
            "tokenizer.json: not valid JSON",
        ),
        ('{"hello": "world"}', "tokenizer.json: not a tokenizer the tokenizers library can load"),
    ],
    ids=["truncated", "not-a-tokenizer"],
)
def test_a_malformed_tokenizer_is_named(models, tmp_path, capsys, reliability, text, expected):
    from hm3.evaluation.scorer import load_model

    base, expert = models
    (base / "tokenizer.json").write_text(text)
    rc, acquired, _ = _acquire(capsys, base, tmp_path / "acquired")
    assert rc == 1 and expected in acquired, acquired
    with pytest.raises(HM3Error, match=expected):
        load_model(base)
    if "JSON" in expected:  # a merge copies the file without loading it, but parses it
        rc, merged, _ = _merge(capsys, base, expert, tmp_path / "merged")
        assert rc == 1 and expected in merged, merged
    assert _no_output(tmp_path / "acquired") and _no_output(tmp_path / "merged")
    reliability(
        "bad input",
        f"tokenizer.json {'truncated' if 'JSON' in expected else 'valid JSON, no tokenizer'}",
        saw=acquired,
        done="hm3 acquire, the evaluation loader" + (", hm3 merge" if "JSON" in expected else ""),
        count=3 if "JSON" in expected else 2,
    )


def test_a_malformed_special_tokens_map_is_named(models, tmp_path, capsys, reliability):
    base, _ = models
    (base / "special_tokens_map.json").write_bytes(b"\xff\xfe garbage")
    rc, err, _ = _acquire(capsys, base, tmp_path / "acquired")
    assert rc == 1 and "special_tokens_map.json: not valid JSON" in err, err
    reliability(
        "bad input",
        "special_tokens_map.json that is not JSON",
        saw=err,
        done="binary garbage; hm3 acquire",
    )


# ------------------------------------------------------------------ case 5: safetensors headers
def _edit_header(shard: Path, change) -> None:
    """Rewrite a safetensors header with ``change(header)``; the data stays as it was."""
    data = shard.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    change(header)
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    shard.write_bytes(struct.pack("<Q", len(encoded)) + encoded + data[8 + length :])


EMBEDDING = "model.embed_tokens.weight"


def _past_the_end(header):
    entry = header[EMBEDDING]
    entry["shape"] = [1 << 20, 1 << 10]  # 4 GiB that the file does not hold
    entry["data_offsets"] = [entry["data_offsets"][0], entry["data_offsets"][0] + (1 << 32)]


def _shape(header, shape):
    header[EMBEDDING]["shape"] = shape


HEADERS = {
    "offsets past the end of the file": (_past_the_end, "truncated safetensors file"),
    "begin after end": (
        lambda h: h[EMBEDDING].update(data_offsets=h[EMBEDDING]["data_offsets"][::-1]),
        "not [begin, end] with 0 <= begin <= end",
    ),
    "offsets not matching shape and dtype": (lambda h: _shape(h, [23, 8]), "has 1472 bytes"),
    "unknown dtype": (lambda h: h[EMBEDDING].update(dtype="Q7"), 'unknown dtype "Q7"'),
    "negative offset": (
        lambda h: h[EMBEDDING].update(data_offsets=[-8, 1464]),
        "0 <= begin <= end",
    ),
    "overlapping tensors": (
        lambda h: h["lm_head.weight"].update(data_offsets=h[EMBEDDING]["data_offsets"]),
        "overlap in the file",
    ),
}


@pytest.mark.parametrize("case", list(HEADERS))
def test_a_lying_safetensors_header_is_refused_before_any_allocation(
    models, tmp_path, capsys, reliability, case
):
    from hm3.checkpoints.causal_lm import load_causal_lm

    change, expected = HEADERS[case]
    base, expert = models
    _edit_header(expert / "model.safetensors", change)
    rc, acquired, _ = _acquire(capsys, expert, tmp_path / "acquired")
    assert rc == 1 and "model.safetensors: " in acquired and expected in acquired, acquired
    rc, merged, _ = _merge(capsys, base, expert, tmp_path / "merged")
    assert rc == 1 and expected in merged, merged
    with pytest.raises(HM3Error, match="model.safetensors: "):
        load_causal_lm(expert)
    assert _no_output(tmp_path / "acquired") and _no_output(tmp_path / "merged")
    reliability(
        "bad input",
        f"safetensors header: {case}",
        saw=acquired,
        done=f"{EMBEDDING}'s header entry edited; acquire, merge, evaluation loader",
        count=3,
    )


def test_an_index_naming_a_shard_outside_the_folder_is_refused(tmp_path, reliability):
    from hm3.checkpoints.sharded import CheckpointReader

    model = tmp_path / "sharded"
    small_llama(vocab_size=23).save_pretrained(model, max_shard_size="8KB")
    index_file = model / "model.safetensors.index.json"
    index = json.loads(index_file.read_text())
    index["weight_map"] = {name: "../elsewhere/model.safetensors" for name in index["weight_map"]}
    index_file.write_text(json.dumps(index))
    with pytest.raises(
        HM3Error, match="shard '../elsewhere/model.safetensors' is not a file name"
    ) as err:
        CheckpointReader(model)
    reliability(
        "untrusted models",
        "safetensors index naming a shard outside the folder",
        saw=err.value,
        done="weight_map entries set to ../elsewhere/model.safetensors; checkpoint reader",
    )


def test_the_snapshot_check_does_not_trust_a_folder_merely_named_snapshots(tmp_path):
    """Only ``models--*/snapshots/<rev>`` widens the link root; a folder named like a
    snapshot elsewhere keeps its own."""
    from hm3.checkpoints.files import link_root

    folder = tmp_path / "snapshots" / "rev"
    folder.mkdir(parents=True)
    assert link_root(folder) == folder.resolve()
    assert (
        os.path.basename(link_root(tmp_path / "models--a--b" / "snapshots" / "r")) == "models--a--b"
    )
