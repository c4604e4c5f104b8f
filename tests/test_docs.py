"""The README and docs/ against what they describe: the stage table against dvc.yaml, the layout against the tree,
docs/results.md against metrics/, every link against the files. A README that drifts fails here."""

import io
import re
import subprocess
import tarfile
import tokenize

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


def test_layout_names_every_subpackage_and_the_modules_of_each_phase():
    """Every module sits in a subpackage; the README names each subpackage, and lists the modules of those it
    describes with "module, module; what they do"."""
    package = ROOT / "acceptability"
    assert {path.name for path in package.glob("*.py")} == {"__init__.py"}
    described = dict(re.findall(r"│   [├└]── (\w+)/\s+(.*)", layout()))
    assert set(described) == {path.parent.name for path in package.glob("*/__init__.py")}
    for name, text in described.items():
        if ";" in text:
            listed = {word.strip() for word in text.split(";")[0].split(",")}
            assert listed == {path.stem for path in (package / name).glob("*.py")} - {"__init__"}, name


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


# A measured figure: a decimal number, or a number with a unit of time, size, rate, share or scale. Not figures:
# code and links; versions (after a product's name); limits and settings (after ≤, at most, up to, under, within,
# for, every…); a value quoted right after its setting's name, `name` (value), which test_quoted_settings_match
# checks against params.yaml and the code.
UNIT = r"(?:µs|ms|s|min|minutes|seconds|h|hours|[KMG]i?B|%|x|M|req/s|sentences/s|layers|epochs)"
FIGURE = re.compile(rf"(?<![\w.\-/#])(\d[\d,]*\.\d+|\d[\d,]*(?=\s?{UNIT}(?!\w)))(?![\w]*\.\d)")
NOT_MEASURED_BEFORE = re.compile(
    r"(?:≤|≥|<|>|±|\bat most|\bup to|\bunder|\bwithin|\bbelow|\babove|\bover|\bthan|\bfor|\bevery|\bper|\bafter|"
    r"Python|glibc|torch|Lightning|CUDA|ONNX Runtime|ECS|QEMU|Debian|version|`\w[\w.]*` \()\s*$",
    re.I,
)
GENERATED = re.compile(r"<!-- generated: (\w+) -->.*?<!-- end generated -->", re.S)
# "*History: <commit(s)>, <machine>…*" or "*Published: <source>…*" marks what follows, up to the next heading.
LABEL = re.compile(r"^\*(History|Published)[:,] [^*]+\*")
COMMIT = re.compile(r"\b[0-9a-f]{7,40}\b")
MACHINE = re.compile(r"AMD|Intel|Xeon|EPYC|NVIDIA|H100|H200|any CPU|CPU not recorded")


def page_lines(page) -> list[tuple[int, str, str | None]]:
    """(line number, its text outside code and links with the line before it, the history or citation label it
    sits under) for every prose line of a page, and for the comments in its code blocks (where sample answers and
    timings hide). Generated blocks are left out."""
    text = GENERATED.sub(lambda m: "\n" * m.group(0).count("\n"), page.read_text())
    text = re.sub(r"<!--.*?-->", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    found, fenced, label, before = [], False, None, ""
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            comment = re.search(r"(?:^\s*| )# (.*)", line)
            prose = comment.group(1) if comment else ""
        elif line.startswith("#"):
            label, before = None, ""
            continue
        else:
            label = line if LABEL.match(line) else label
            prose = re.sub(r"\]\([^)]*\)", "]", re.sub(r"`[^`]*`", "`x`", line))
        found.append((number, f"{before}\n{prose}", label))
        before = prose
    return found


def figures(text: str) -> list[str]:
    """The measured figures on a page_lines line, the line before it read only for context."""
    context, line = text.rsplit("\n", 1) if "\n" in text else ("", text)
    return [
        m.group(1) for m in FIGURE.finditer(line) if not NOT_MEASURED_BEFORE.search(f"{context} {line[: m.start()]}")
    ]


def shallow() -> bool:
    out = subprocess.run(["git", "rev-parse", "--is-shallow-repository"], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.strip() != "false"


DOC_PAGES = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "results.md")]


def test_every_measured_figure_is_generated_or_labelled_history():
    """docs/results.md is generated whole; anywhere else a measured figure sits in a generated block or under a
    *History* label (commit and machine) or a *Published* one (its source)."""
    loose = [
        f"{page.name}:{number}: {found}"
        for page in DOC_PAGES
        for number, prose, label in page_lines(page)
        if label is None and (found := figures(prose))
    ]
    assert not loose, "figures outside a generated block or a labelled history:\n" + "\n".join(loose)


def test_history_labels_name_a_known_commit_and_the_machine():
    known = not shallow()
    for page in DOC_PAGES:
        for label in {label for _, _, label in page_lines(page) if label and label.startswith("*History")}:
            commits = COMMIT.findall(label)
            assert commits and MACHINE.search(label), f"{page.name}: {label}"
            for commit in commits if known else []:
                check = subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=ROOT)
                assert check.returncode == 0, f"{page.name}: {commit} is not a commit of this repository"


def test_the_figure_rule_tells_figures_from_other_numbers():
    assert figures("val MCC 0.4065, p50 2.08 ms, 26.8 MB, 40 min, 1.27x, 98.2%, 19M parameters, cut to 4 layers") == [
        "0.4065",
        "2.08",
        "26.8",
        "40",
        "1.27",
        "98.2",
        "19",
        "4",
    ]
    assert figures("8,051 rows, batch 32, seed 42, Python 3.12, torch 2.13.0, at most 64 KiB, for 5 min") == []
    assert figures("`MAX_BODY_BYTES` (256 KiB), issue 26, family 6, model 207, under 15 min, ≤ 0.01") == []


QUOTED = re.compile(r"`([A-Za-z_][\w.]*)` \((\d[\d,]*(?:\.\d+)?(?:e-?\d+)?)(?: ?(KiB|MiB|ms|s)\b)?")
SCALE = {None: 1, "s": 1, "ms": 1, "KiB": 1024, "MiB": 1024 * 1024}


def test_quoted_settings_match_params_and_the_server_defaults():
    """`name` (value) in the README and docs/: a params.yaml key or a COLA_SERVE_* setting, quoted as it is."""
    from acceptability.serving.settings import ServeSettings

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    served = {name.upper(): value for name, value in vars(ServeSettings()).items()}
    checked = 0
    for page in DOC_PAGES:
        for name, value, unit in QUOTED.findall(page.read_text()):
            stated = float(value.replace(",", "")) * SCALE[unit or None]
            if name in served:
                actual = served[name]
            elif "." in name and name.split(".")[0] in params:
                actual = params
                for key in name.split("."):
                    actual = actual[key]
            else:
                continue  # a column or a split, not a setting
            assert stated == float(actual), f"{page.name}: `{name}` ({value}{unit}) but it is {actual}"
            checked += 1
    assert checked >= 20


def test_a_sample_answer_in_a_code_block_counts_and_a_label_covers_up_to_the_next_heading(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "## Serve\n\n```bash\ncurl -s localhost:8080/v1/predict   # ready in 0.41 s\n"
        '# {"model_version":"int8-0bb3d954c05a","probabilities":{"acceptable":0.99935}}\n```\n\n'
        "*History: 3862e46, on an AMD EPYC.*\n\n1,342.9 req/s\n\n## Next\n\nefficiency 0.73\n"
    )
    loose = [(number, figures(prose)) for number, prose, label in page_lines(page) if not label and figures(prose)]
    assert loose == [(4, ["0.41"]), (5, ["0.99935"]), (14, ["0.73"])]


def comments(path) -> list[tuple[int, str]]:
    """(line, text) of a Python file's comments and docstrings, or of a Makefile's or YAML file's comments."""
    if path.suffix != ".py":
        lines = path.read_text().splitlines()
        return [(n, m.group(1)) for n, line in enumerate(lines, 1) if (m := re.search(r"(?:^|\s)#\s?(.*)", line))]
    found = []
    for token in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        if token.type == tokenize.COMMENT:
            found.append((token.start[0], token.string))
        elif token.type == tokenize.STRING and token.string.startswith('"""'):
            found += [(token.start[0] + i, line) for i, line in enumerate(token.string.splitlines())]
    return found


def test_code_comments_and_docstrings_carry_no_measurements():
    """A measured figure in a comment goes stale with the next run: link the doc that holds it instead."""
    sources = [*sorted((ROOT / "acceptability").rglob("*.py")), *sorted((ROOT / "stages").glob("*.py"))]
    sources += [ROOT / "Makefile", ROOT / "dvc.yaml", ROOT / "tests/conftest.py"]
    found = [
        f"{path.relative_to(ROOT)}:{number}: {numbers}"
        for path in sources
        for number, text in comments(path)
        if (numbers := figures(re.sub(r"`[^`]*`|\"[^\"]*\"", "``", text)))
    ]
    assert not found, "measurements in comments:\n" + "\n".join(found)
