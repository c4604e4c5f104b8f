"""The README and docs/ against what they describe: the stage table against dvc.yaml, the layout against the tree,
docs/results.md against metrics/, every link against the files. A README that drifts fails here."""

import io
import re
import subprocess
import tarfile

import yaml
from conftest import ROOT

from acceptability.ops.results_doc import render

README = (ROOT / "README.md").read_text()
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def paths(entries: list) -> list[str]:
    return [entry if isinstance(entry, str) else next(iter(entry)) for entry in entries]


def cells(text: str) -> list[str]:
    return re.findall(r"`([^`]+)`", text)


def test_readme_is_a_front_door_of_at_most_12_kb():
    assert len(README.encode()) <= 12 * 1024


def test_stage_table_matches_dvc_yaml():
    rows = [line.split("|")[1:-1] for line in README.splitlines() if re.match(r"\| `\w+` \| `stages/", line)]
    table = {cells(row[0])[0]: row for row in rows}
    assert list(table) == list(STAGES)
    for name, (_, script, params, outputs) in table.items():
        stage = STAGES[name]
        run = re.search(r"stages/run (\w+)", stage["cmd"]).group(1)
        assert cells(script) == [f"stages/{run}.py"]
        assert cells(params) == stage.get("params", [])
        declared = paths(stage.get("outs", [])) + paths(stage.get("metrics", [])) + paths(stage.get("plots", []))
        assert sorted(cells(outputs)) == sorted(declared)


def layout() -> str:
    return README.split("## Layout", 1)[1].split("```")[1]


def test_layout_names_every_package_module_and_nothing_that_is_not_there():
    listed = set(re.findall(r"[├└]── (\w+\.py)", layout()))
    modules = {path.name for path in (ROOT / "acceptability").glob("*.py") if path.name != "__init__.py"}
    assert listed == modules
    subpackages = {path.parent.name for path in (ROOT / "acceptability").glob("*/__init__.py")}
    assert set(re.findall(r"│   [├└]── (\w+)/", layout())) == subpackages


def test_layout_top_level_entries_exist():
    for line in layout().splitlines():
        match = re.match(r"^[├└]── (\S+?)(,|/|\s)", line)
        if match and "*" not in match.group(1):
            assert (ROOT / match.group(1)).exists(), line


def test_results_page_is_generated_from_the_committed_metrics(tmp_path):
    """Committed against committed: `make repro` on another CPU rewrites metrics/ in the workspace, not the page."""
    committed = ["metrics", "docs/results.md", "data/teacher/record.json"]
    archive = subprocess.run(["git", "archive", "HEAD", *committed], cwd=ROOT, capture_output=True)
    assert archive.returncode == 0, archive.stderr
    tarfile.open(fileobj=io.BytesIO(archive.stdout)).extractall(tmp_path, filter="data")
    assert (tmp_path / "docs/results.md").read_text() == render(tmp_path / "metrics"), "stale: run `make docs`"


def test_every_link_in_the_readme_and_docs_points_at_a_file():
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name}: {target}"
