"""params.yaml: composed from conf/ exactly as DVC does, and checked before any training starts."""

import re
import subprocess
import sys
from dataclasses import fields, replace

import pytest
import yaml
from conftest import ROOT, compose

from acceptability.core.config import (
    AugmentConfig,
    BenchmarkConfig,
    DataSource,
    EvaluateConfig,
    ExportConfig,
    ModelShape,
    ModelSource,
    PromoteConfig,
    TrainConfig,
    model_group,
)
from acceptability.core.errors import UserError
from acceptability.core.params import Invalid, known_models
from acceptability.model.teacher import teacher_sections


def test_params_yaml_is_the_composition_of_conf(tmp_path, base_params):
    assert compose(tmp_path, []) == base_params


@pytest.mark.parametrize(
    "group", ["all_minilm_l6_v2", "all_mpnet_base_v2", "bert_tiny", "bert_mini", "bert_small", "electra_small"]
)
def test_every_model_group_composes(tmp_path, group):
    params = compose(tmp_path, [f"model={group}", "train.learning_rate=1e-4"])
    assert params["model"]["name"] == group
    assert params["train"]["learning_rate"] == 1e-4
    assert model_group(group, ROOT / "conf") == group


@pytest.mark.parametrize("recipe", sorted(path.stem for path in (ROOT / "conf/experiment").glob("*.yaml")))
def test_each_recipe_in_conf_experiment_is_one_override_that_changes_only_what_it_names(tmp_path, base_params, recipe):
    """dvc exp run -S '+experiment=<recipe>' composes a valid params.yaml: the same as the default except the keys
    the recipe's file sets."""
    params = compose(tmp_path, [f"+experiment={recipe}"])
    recipe_file = yaml.safe_load((ROOT / "conf/experiment" / f"{recipe}.yaml").read_text())

    def flat(tree: dict, prefix: str = "") -> dict:
        """{"a.b": value} for every leaf of a nested mapping."""
        leaves = {}
        for key, value in tree.items():
            leaves |= flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value}
        return leaves

    composed, default = flat(params), flat(base_params)
    changed = {key for key in composed.keys() | default.keys() if composed.get(key) != default.get(key)}
    assert changed == set(flat(recipe_file)) and changed
    TrainConfig.from_section(params["train"])
    teacher_sections(params)


def test_known_models_are_the_conf_groups():
    assert known_models(ROOT / "conf") == [
        "all_minilm_l6_v2",
        "all_mpnet_base_v2",
        "bert_mini",
        "bert_small",
        "bert_tiny",
        "electra_small",
    ]


def test_unknown_model_group(tmp_path):
    with pytest.raises(
        Invalid,
        match=r"^a model group of conf/model \(all_minilm_l6_v2, all_mpnet_base_v2, bert_mini, bert_small, bert_tiny, "
        r"electra_small\)$",
    ):
        model_group("bert_huge", ROOT.joinpath("conf").relative_to(ROOT))


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("learning_rate", 0, "train.learning_rate must be a positive number, found 0"),
        ("learning_rate", -1e-4, "train.learning_rate must be a positive number, found -0.0001"),
        ("batch_size", 0, "train.batch_size must be a positive integer, found 0"),
        ("batch_size", 2.5, "train.batch_size must be a positive integer, found 2.5"),
        ("num_train_epochs", "3", "train.num_train_epochs must be a positive integer, found '3'"),
        ("warmup_ratio", 1.5, r"train.warmup_ratio must be in \[0, 1\), found 1.5"),
        ("warmup_ratio", True, r"train.warmup_ratio must be in \[0, 1\), found True"),
        ("dropout", 1.0, r"train.dropout must be in \[0, 1\), found 1.0"),
        ("label_smoothing", -0.1, r"train.label_smoothing must be in \[0, 1\), found -0.1"),
        ("label_smoothing", None, r"train.label_smoothing must be in \[0, 1\), found None"),
        ("gradient_clip_val", 0, "train.gradient_clip_val must be a positive number, found 0"),
    ],
)
def test_bad_training_values(base_params, key, value, message):
    with pytest.raises(UserError, match=message):
        TrainConfig.from_section({**base_params["train"], key: value})


def test_train_stage_rejects_bad_params_before_loading_anything(in_tmp, params):
    params["train"]["learning_rate"] = -0.1
    (in_tmp / "params.yaml").write_text(yaml.safe_dump(params))
    result = subprocess.run([sys.executable, str(ROOT / "stages" / "train.py")], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr == "error: params.yaml: train.learning_rate must be a positive number, found -0.1\n"
    assert not (in_tmp / "models").exists()


def test_train_stage_rejects_unknown_model_without_traceback(in_tmp, params):
    params["model"]["name"] = "bert_huge"
    (in_tmp / "params.yaml").write_text(yaml.safe_dump(params))
    result = subprocess.run([sys.executable, str(ROOT / "stages" / "train.py")], capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: params.yaml: model.name must be a model group of conf/model (")
    assert result.stderr.endswith("), found 'bert_huge'\n")


def test_typed_configs_need_every_key_and_refuse_unknown_ones(base_params):
    assert TrainConfig.from_section(base_params["train"]).learning_rate == base_params["train"]["learning_rate"]
    assert ModelShape.from_section(base_params["model"]) == ModelShape("all_minilm_l6_v2", "mean", 6)
    missing = {key: value for key, value in base_params["train"].items() if key != "warmup_ratio"}
    with pytest.raises(UserError, match="params.yaml: train lacks warmup_ratio; conf/ sets every key"):
        TrainConfig.from_section(missing)
    with pytest.raises(UserError, match="teacher.train has keys no code reads: learnig_rate"):
        teacher_sections(with_teacher(base_params, train={"learnig_rate": 1e-4}))
    with pytest.raises(UserError, match="train.distill_weight must be in"):
        TrainConfig.from_section({**base_params["train"], "distill_weight": 1.5})
    with pytest.raises(UserError, match="augmented_per_sentence > 0 needs train.distill_weight > 0"):
        TrainConfig.from_section({**base_params["train"], "augmented_per_sentence": 1, "distill_weight": 0.0})
    with pytest.raises(UserError, match="teacher.train.augmented_per_sentence > 0 needs teacher.train.distill"):
        teacher_sections(with_teacher(base_params, train={"augmented_per_sentence": 1, "distill_weight": 0.0}))


def with_teacher(params: dict, train: dict | None = None, **changes) -> dict:
    """params with the teacher section changed: `train` merged into teacher.train, `changes` set beside it."""
    teacher = params["teacher"]
    return {**params, "teacher": {**teacher, "train": {**teacher["train"], **(train or {})}, **changes}}


def test_one_teacher_per_seed_and_the_seeds_checked(base_params):
    members = teacher_sections(base_params)[2]
    assert [cfg.seed for cfg in members] == base_params["teacher"]["seeds"] and len(members) >= 2
    assert len({replace(cfg, seed=0) for cfg in members}) == 1  # the same recipe, only the seed differs
    for wrong in ([], [1, 1], [-1], "42", None):
        with pytest.raises(UserError, match=r"teacher.seeds must be a non-empty list of distinct integers >= 0"):
            teacher_sections(with_teacher(base_params, seeds=wrong))
    with pytest.raises(UserError, match="teacher.train.seed is not read: the teacher's seeds are teacher.seeds"):
        teacher_sections(with_teacher(base_params, train={"seed": 3}))


def test_one_int8_threshold_for_the_export_gate_and_the_promotion(base_params):
    assert "max_int8_mcc_drop" in base_params["export"] and "max_int8_mcc_drop" not in base_params["promote"]
    config = PromoteConfig.from_params(base_params)
    assert config.max_int8_mcc_drop == ExportConfig.from_section(base_params["export"]).max_int8_mcc_drop
    with pytest.raises(UserError, match="promote.max_int8_mcc_drop is gone; export.max_int8_mcc_drop is the one"):
        PromoteConfig.from_params({**base_params, "promote": {**base_params["promote"], "max_int8_mcc_drop": 0.5}})


def test_every_key_of_params_yaml_is_a_typed_config_field(base_params):
    """Defaults live only in conf/: each section is built from params.yaml by one dataclass, which reads every key
    (data and model are shared by two stages, so two dataclasses split them)."""
    names = lambda *classes: {field.name for cls in classes for field in fields(cls)}  # noqa: E731
    assert set(base_params["data"]) == names(DataSource) | {"max_seq_length"}
    assert set(base_params["model"]) == names(ModelSource, ModelShape)
    assert set(base_params["teacher"]["model"]) == names(ModelSource, ModelShape)
    assert set(base_params["teacher"]["augment"]) == names(AugmentConfig)
    assert set(base_params["teacher"]) == {"model", "seeds", "train", "augment"}
    assert set(base_params["teacher"]["train"]) | {"seed"} == names(TrainConfig)  # one seed per teacher.seeds
    for key, cls in [("train", TrainConfig), ("evaluate", EvaluateConfig), ("export", ExportConfig)]:
        assert set(base_params[key]) == names(cls)
    assert set(base_params["benchmark"]) == names(BenchmarkConfig)
    assert set(base_params["promote"]) | {"max_int8_mcc_drop"} == names(PromoteConfig)


@pytest.mark.parametrize(
    ("name", "config", "change", "message"),
    [
        ("export", "ExportConfig", {"fuse": "yes"}, "export.fuse must be true or false, found 'yes'"),
        ("export", "ExportConfig", {"opset": 0}, "export.opset must be a positive integer, found 0"),
        ("export", "ExportConfig", {"per_chanel": True}, "export has keys no code reads: per_chanel"),
        (
            "export",
            "ExportConfig",
            {"smooth_nodes": ["/dense/", "layer.(0"]},
            "export.smooth_nodes must be a list of regular expressions ('layer.(0': missing ), unterminated subpattern",
        ),
        ("export", "ExportConfig", {"smooth_alpha": 1.5}, "export.smooth_alpha must be in [0, 1], found 1.5"),
        ("benchmark", "BenchmarkConfig", {"warmup": -1}, "benchmark.warmup must be a positive integer, found -1"),
        ("benchmark", "BenchmarkConfig", {"max_sentences": 0}, "benchmark.max_sentences must be a positive integer"),
        ("evaluate", "EvaluateConfig", {"batch_size": 1.5}, "evaluate.batch_size must be a positive integer"),
        ("data", "DataSource", {"calibration_rows": -5}, "data.calibration_rows must be an integer >= 0, found -5"),
    ],
)
def test_typed_configs_name_the_bad_key(base_params, name, config, change, message):
    import acceptability.core.config

    build = getattr(acceptability.core.config, config).from_section
    with pytest.raises(UserError, match=re.escape(message)):
        build({**base_params[name], **change})
    missing = dict(base_params[name])
    first = next(iter(missing))
    missing.pop(first)
    with pytest.raises(UserError, match=f"params.yaml: {name} lacks {first}"):
        build(missing)


def test_a_count_written_as_a_float_is_refused_not_converted(base_params):
    from acceptability.core.config import TrainConfig

    for key in ("batch_size", "seed", "log_every_n_steps"):
        with pytest.raises(UserError, match=rf"train.{key} must be (a positive integer|an integer >= 0), found 32.0"):
            TrainConfig.from_section({**base_params["train"], key: 32.0})
