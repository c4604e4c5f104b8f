"""The package's phases and what each may import, held against the code's imports (static, nothing is imported):
inference and serving stay torch-free and never reach data, model or ops; nothing imports upward."""

import ast

import pytest
from conftest import ROOT
from import_closure import imported_modules

# subpackage -> the subpackages it may import (besides itself and the package's own __init__)
MAY_IMPORT = {
    "core": set(),
    "inference": set(),
    "serving": {"inference"},  # the images copy inference/ and serving/ alone
    "data": {"core", "inference"},
    "model": {"core", "inference", "data"},
    "export": {"core", "inference", "data", "model"},
    "ops": {"core", "inference", "data", "model", "export", "serving"},
}
TORCH = {"torch", "lightning", "transformers", "torchmetrics", "dvclive", "wandb"}


def modules(subpackage: str):
    return sorted((ROOT / "acceptability" / subpackage).glob("*.py"))


def test_every_subpackage_has_a_rule():
    assert set(MAY_IMPORT) == {path.parent.name for path in (ROOT / "acceptability").glob("*/__init__.py")}


@pytest.mark.parametrize("subpackage", list(MAY_IMPORT))
def test_a_phase_imports_only_what_it_may(subpackage):
    for path in modules(subpackage):
        reached = {
            name.split(".")[1]
            for name in imported_modules(path, ROOT)
            if name.startswith("acceptability.") and name.split(".")[1] != subpackage
        }
        assert reached <= MAY_IMPORT[subpackage], f"{path.relative_to(ROOT)} imports {sorted(reached)}"
        assert not {name for name in imported_modules(path, ROOT) if name.startswith("stages")}


@pytest.mark.parametrize("subpackage", ["inference", "serving"])
def test_the_shipped_phases_never_import_torch(subpackage):
    for path in modules(subpackage):
        tree = ast.parse(path.read_text())
        names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        names |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert not {name.split(".")[0] for name in names} & TORCH, path.relative_to(ROOT)


def test_the_rule_catches_an_upward_import(tmp_path):
    """The check itself: a serving module that imported the model phase would be named."""
    (tmp_path / "acceptability" / "serving").mkdir(parents=True)
    (tmp_path / "acceptability" / "model").mkdir()
    (tmp_path / "acceptability" / "model" / "module.py").write_text("")
    bad = tmp_path / "acceptability" / "serving" / "app.py"
    bad.write_text("from acceptability.model.module import load_classifier\n")
    assert imported_modules(bad, tmp_path) == {"acceptability.model.module"}


def test_no_module_over_300_lines_and_no_function_over_60():
    sources = [*sorted((ROOT / "acceptability").rglob("*.py")), *sorted((ROOT / "stages").glob("*.py"))]
    long_modules = [str(path.relative_to(ROOT)) for path in sources if len(path.read_text().splitlines()) > 300]
    long_functions = [
        f"{path.relative_to(ROOT)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in sources
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60
    ]
    assert long_modules == [] and long_functions == []
