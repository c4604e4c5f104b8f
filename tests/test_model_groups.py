"""Each hub model group, built on a local stand-in with its published config shape (random weights, real vocab).

The hub can't be reached here, so the stand-in replaces only the download; every stage after it runs unchanged.
"""

import json
import shutil

import pytest
import yaml
from conftest import TINY_COLA, TINY_ROWS, compose, packaged_model, sha256, tokenize_with_teacher
from stage_runner import run_stage

from acceptability.core.params import known_models

# The config.json shapes published on the hub for each group's model_name_or_path.
STAND_INS = {
    "bert_tiny": (
        "BertConfig",
        {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 512},
    ),
    "bert_mini": (
        "BertConfig",
        {"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 1024},
    ),
    "bert_small": (
        "BertConfig",
        {"hidden_size": 512, "num_hidden_layers": 4, "num_attention_heads": 8, "intermediate_size": 2048},
    ),
    "electra_small": (
        "ElectraConfig",
        {
            "embedding_size": 128,
            "hidden_size": 256,
            "num_hidden_layers": 12,
            "num_attention_heads": 4,
            "intermediate_size": 1024,
        },
    ),
}


def stand_in(group: str, folder):
    import torch
    import transformers

    config_class, shape = STAND_INS[group]
    torch.manual_seed(0)
    config = getattr(transformers, config_class)(vocab_size=30522, max_position_embeddings=512, **shape)
    transformers.AutoModel.from_config(config).save_pretrained(folder, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copyfile(packaged_model() / name, folder / name)
    return folder


def group_params(group: str, in_tmp, model_dir) -> dict:
    """`-S model=<group>` composed by Hydra, then pointed at the stand-in and the tiny CoLA rows."""
    params = compose(
        in_tmp,
        [
            f"model={group}",
            "train.num_train_epochs=1",
            "train.batch_size=16",
            "train.accelerator=cpu",
            "benchmark.max_sentences=8",
            "benchmark.warmup=1",
        ],
    )
    assert params["model"]["name"] == group and params["model"]["source"] == "hub"
    params["model"].update(source="dir", dir=str(model_dir), sha256=sha256(model_dir / "model.safetensors"))
    params["data"].update(
        source="dir",
        dir=str(TINY_COLA),
        expected_rows=dict(TINY_ROWS),
        sha256={p.name: sha256(p) for p in sorted(TINY_COLA.glob("*.tsv"))},
        calibration_rows=16,
    )
    (in_tmp / "params.yaml").write_text(yaml.safe_dump(params))
    return params


def run_stages(folder, teacher, scripts: tuple) -> None:
    """The stages in order; tokenize with the tiny teacher's outputs in data/teacher/."""
    for script in scripts:
        if script == "tokenize_splits.py":
            tokenize_with_teacher(folder, teacher)
        else:
            run_stage(script)


def test_every_hub_group_has_a_stand_in():
    assert set(known_models()) - {"all_minilm_l6_v2", "all_mpnet_base_v2"} == set(STAND_INS)  # those two: packages


@pytest.mark.parametrize("group", ["bert_mini", "bert_small", "electra_small"])
def test_group_builds_and_trains(group, in_tmp, tiny_teacher):
    model_dir = stand_in(group, in_tmp / "stand-in")
    group_params(group, in_tmp, model_dir)
    run_stages(in_tmp, tiny_teacher, ("download.py", "tokenize_splits.py", "train.py", "evaluate.py"))
    config = json.loads((in_tmp / "models/model/config.json").read_text())
    assert config["model_type"] == ("electra" if group == "electra_small" else "bert")
    assert config["id2label"] == {"0": "unacceptable", "1": "acceptable"}
    metrics = json.loads((in_tmp / "metrics/eval.json").read_text())
    assert metrics["val"]["n"] == 32 and -1 <= metrics["val"]["mcc"] <= 1


def test_bert_tiny_runs_the_whole_pipeline_unchanged(in_tmp, tiny_teacher):
    """The original project's model: the six stages after the teacher, as `dvc exp run -S model=bert_tiny` runs them."""
    model_dir = stand_in("bert_tiny", in_tmp / "stand-in")
    group_params("bert_tiny", in_tmp, model_dir)
    scripts = ("download.py", "tokenize_splits.py", "train.py", "evaluate.py", "export.py", "benchmark.py")
    run_stages(in_tmp, tiny_teacher, scripts)
    card = json.loads((in_tmp / "models/onnx/model_card.json").read_text())
    assert card["labels"] == ["unacceptable", "acceptable"]
    assert card["gates"]["fp32_max_abs_logit_diff"] <= 1e-4
    benchmark = json.loads((in_tmp / "metrics/benchmark.json").read_text())
    assert {"torch_fp32", "onnx_fp32", "onnx_int8"} <= set(benchmark)
    assert benchmark["torch_fp32"]["mcc"] == pytest.approx(benchmark["onnx_fp32"]["mcc"], abs=1e-9)
