"""dvc.yaml against the code: each stage lists exactly the project modules it runs and the params it reads.

A module missing from `deps` is a change that leaves a stale cached output; a param missing from `params` likewise.
An extra entry re-runs a stage for nothing (switching W&B off must not retrain)."""

import os
import re
import shutil

import pytest
import yaml
from conftest import ROOT, tiny_params
from import_closure import closure

import acceptability.core.params

STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
SCRIPTS = {name: re.search(r"stages/run (\w+)", stage["cmd"]).group(1) for name, stage in STAGES.items()}
ARGS = {"evaluate": ("--metrics", "metrics")}  # every other stage's defaults are its dvc.yaml paths
LOAD_PARAMS = acceptability.core.params.load_params


def listed_modules(stage: dict) -> set[str]:
    return {dep for dep in stage["deps"] if dep.endswith(".py")}


@pytest.mark.parametrize("name", list(STAGES))
def test_stage_deps_are_exactly_the_modules_it_runs(name):
    reached = {str(path) for path in closure(ROOT, f"stages.{SCRIPTS[name]}")}
    listed = listed_modules(STAGES[name])
    assert sorted(reached - listed) == [], f"{name} runs these modules but dvc.yaml does not list them"
    assert sorted(listed - reached) == [], f"{name} lists these modules but never runs them"


def test_closure_follows_lazy_imports_and_python_m():
    """The benchmark stage imports nothing from acceptability.ops.benchmark: it launches it with `python -m`; export
    imports its package modules inside main()."""
    assert "acceptability/ops/benchmark.py" in {str(p) for p in closure(ROOT, "stages.benchmark")}
    assert "acceptability/export/parity.py" in {str(p) for p in closure(ROOT, "stages.export")}
    assert "acceptability/serving/app.py" not in {str(p) for p in closure(ROOT, "stages.export")}


class Recorder(dict):
    """params.yaml that notes the dotted key of each value read; a section read whole (iterated, dumped) notes the
    section itself."""

    def __init__(self, data: dict, path: str, reads: set):
        super().__init__(data)
        self.path, self.reads = path, reads

    def _value(self, key, value):
        if isinstance(value, dict):
            return Recorder(value, f"{self.path}{key}.", self.reads)
        self.reads.add(f"{self.path}{key}")
        return value

    def _whole(self) -> None:
        self.reads.add(self.path.rstrip("."))

    def __getitem__(self, key):
        return self._value(key, super().__getitem__(key))

    def get(self, key, default=None):
        if dict.__contains__(self, key):
            return self._value(key, super().__getitem__(key))
        self.reads.add(f"{self.path}{key}")
        return default

    def __contains__(self, key) -> bool:
        self.reads.add(f"{self.path}{key}")
        return super().__contains__(key)

    def __iter__(self):
        self._whole()
        return super().__iter__()

    def keys(self):
        self._whole()
        return super().keys()

    def items(self):
        self._whole()
        return super().items()

    def values(self):
        self._whole()
        return super().values()


def run_recorded(folder, params: dict, stages: dict, recorded: dict, patch: pytest.MonkeyPatch) -> None:
    from stage_runner import run_stage

    shutil.copytree(ROOT / "conf", folder / "conf")
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        for name, script in stages.items():
            reads = recorded.setdefault(name, set())
            patch.setattr(
                acceptability.core.params,
                "load_params",
                lambda path, reads=reads: Recorder(LOAD_PARAMS(path), "", reads),
            )
            run_stage(f"{script}.py", *ARGS.get(name, ()))
    finally:
        os.chdir(cwd)


@pytest.fixture(scope="module")
def reads(tmp_path_factory, base_params, tiny_model_dir, monkeypatch_module) -> dict[str, set]:
    """Run the six stages in order on the tiny model and data and record the params each one reads; then download
    from the hub too (offline, so it stops at once), which reads the hub pins that a folder source does not."""
    params, recorded = tiny_params(base_params, tiny_model_dir), {}
    run_recorded(tmp_path_factory.mktemp("reads"), params, SCRIPTS, recorded, monkeypatch_module)
    params["data"]["source"] = "hub"
    import datasets

    monkeypatch_module.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # fail at once rather than retry for 20 s
    with pytest.raises(SystemExit):
        run_recorded(tmp_path_factory.mktemp("hub"), params, {"download": "download"}, recorded, monkeypatch_module)
    return recorded


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def covers(listed: str, read: str) -> bool:
    return read == listed or read.startswith(f"{listed}.")


@pytest.mark.parametrize("name", list(STAGES))
def test_stage_params_are_exactly_the_keys_it_reads(reads, name):
    listed = STAGES[name].get("params", [])
    unlisted = sorted(read for read in reads[name] if not any(covers(entry, read) for entry in listed))
    unread = sorted(entry for entry in listed if not any(covers(entry, read) for read in reads[name]))
    assert unlisted == [], f"{name} reads these params but dvc.yaml does not list them"
    assert unread == [], f"{name} lists these params but never reads them"


def test_wandb_is_not_a_param_so_switching_it_cannot_retrain():
    assert "tracking" not in yaml.safe_load((ROOT / "params.yaml").read_text())
    assert not any(entry.startswith("tracking") for entry in STAGES["train"]["params"])
