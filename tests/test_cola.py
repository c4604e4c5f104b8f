"""The CoLA loaders: normalised output, verification, and clear errors on bad input."""

import shutil
from pathlib import Path

import pytest
from conftest import ROOT, TINY_COLA, TINY_ROWS

from acceptability.core.config import DataSource
from acceptability.core.errors import UserError
from acceptability.data.cola import COLUMNS, load_cola, load_dir, load_hub, read_split, read_tsv, write_split

SHARED = ROOT.parent / "shared" / "data" / "cola_public"


def copy_tiny(tmp_path: Path) -> Path:
    folder = tmp_path / "cola"
    shutil.copytree(TINY_COLA, folder)
    return folder


def test_dir_source_normalises_to_glue_splits():
    cola = load_dir(TINY_COLA, TINY_ROWS, None)
    train, validation = cola.splits["train"], cola.splits["validation"]
    assert list(train.columns) == COLUMNS and list(validation.columns) == COLUMNS
    assert len(train) == 48 and len(validation) == 32
    assert train["idx"].tolist() == list(range(48))
    assert validation["domain"].tolist() == ["in"] * 16 + ["out"] * 16
    assert set(train["label"]) == {0, 1}
    assert train.loc[0, "source"] == "gj04"
    assert cola.record["source"] == "dir" and cola.record["missing_fields"] == []


def test_split_csv_round_trip_keeps_quotes_and_none_like_words(tmp_path):
    cola = load_dir(TINY_COLA, TINY_ROWS, None)
    frame = cola.splits["train"].copy()
    frame.loc[0, "sentence"] = 'He said "None" and NA, twice.'
    write_split(frame, tmp_path / "train.csv")
    again = read_split(tmp_path / "train.csv")
    assert again.loc[0, "sentence"] == 'He said "None" and NA, twice.'
    assert again["label"].tolist() == frame["label"].tolist()


@pytest.mark.skipif(not SHARED.is_dir(), reason="the shared CoLA release is not beside this checkout")
def test_full_public_release_matches_glue_counts(base_params, monkeypatch):
    monkeypatch.setenv("COLA_DIR", str(SHARED))
    # the default params: auto source, pinned sha256 and row counts
    cola = load_cola(DataSource.from_section(base_params["data"]))
    assert len(cola.splits["train"]) == 8551
    validation = cola.splits["validation"]
    assert len(validation) == 1043
    assert (validation["domain"] == "in").sum() == 527 and (validation["domain"] == "out").sum() == 516


def test_wrong_column_count_names_file_line_and_shape(tmp_path):
    folder = copy_tiny(tmp_path)
    path = folder / "in_domain_dev.tsv"
    lines = path.read_text().splitlines()
    lines[2] = "gj04\t1\tA sentence without its mark column."
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError) as err:
        read_tsv(path, "in")
    assert str(err.value) == (
        f"{path}, line 3: expected 4 tab-separated fields (source, label, original mark, sentence), found 3"
    )


def test_label_other_than_0_or_1_names_field(tmp_path):
    folder = copy_tiny(tmp_path)
    path = folder / "in_domain_train.tsv"
    lines = path.read_text().splitlines()
    lines[4] = lines[4].replace("\t1\t", "\t2\t", 1).replace("\t0\t", "\t2\t", 1)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=rf"{path}, line 5: field 'label' must be 0 or 1, found '2'"):
        read_tsv(path, "in")


def test_missing_cola_dir(monkeypatch, base_params, tmp_path):
    monkeypatch.setenv("COLA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match=r"CoLA folder .*nowhere does not exist \(from data.dir or COLA_DIR\)"):
        load_cola(DataSource.from_section(base_params["data"]))


def test_empty_cola_dir(monkeypatch, base_params, tmp_path):
    monkeypatch.setenv("COLA_DIR", str(tmp_path))
    with pytest.raises(UserError, match="lacks in_domain_train.tsv, in_domain_dev.tsv, out_of_domain_dev.tsv"):
        load_cola(DataSource.from_section(base_params["data"]))


def test_dir_source_without_a_folder(monkeypatch, base_params):
    monkeypatch.delenv("COLA_DIR", raising=False)
    with pytest.raises(UserError, match="data.source=dir needs a folder: set the param data.dir or .*COLA_DIR"):
        load_cola(DataSource.from_section({**base_params["data"], "source": "dir", "dir": None}))


def test_sha256_pin_mismatch(tmp_path):
    folder = copy_tiny(tmp_path)
    with pytest.raises(UserError, match=r"in_domain_dev.tsv: sha256 [0-9a-f]{64} does not match data.sha256"):
        load_dir(folder, TINY_ROWS, {"in_domain_dev.tsv": "0" * 64})


def test_row_count_mismatch():
    with pytest.raises(UserError, match=r"in_domain_train.tsv: expected 8551 rows \(data.expected_rows\), found 48"):
        load_dir(TINY_COLA, {**TINY_ROWS, "train": 8551}, None)


def test_hub_unreachable_says_how_to_run_offline(monkeypatch):
    # The real hub code path; offline mode makes "unreachable" immediate instead of a network time-out.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-hf-home")
    with pytest.raises(UserError) as err:
        load_hub("nyu-mll/glue", "cola", "bcdcba79d07bc864c1c254ccfcedcce55bcc9a8c", TINY_ROWS)
    message = str(err.value)
    assert message.startswith("could not load nyu-mll/glue (cola) at revision bcdcba79")
    assert "To run offline, point COLA_DIR at a folder of the CoLA public release TSVs" in message


def test_auto_prefers_cola_dir_then_external_folder_then_hub(monkeypatch, tmp_path, base_params):
    from acceptability.data.cola import resolve_source

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("COLA_DIR", raising=False)
    assert resolve_source("auto", None) == ("hub", None)
    (tmp_path / "data/external/cola_public").mkdir(parents=True)
    assert resolve_source("auto", None) == ("dir", Path("data/external/cola_public"))
    monkeypatch.setenv("COLA_DIR", "/some/where")
    assert resolve_source("auto", None) == ("dir", Path("/some/where"))
    assert resolve_source("auto", "/param/dir") == ("dir", Path("/param/dir"))
    with pytest.raises(UserError, match="data.source must be one of auto, hub, dir, found 'ftp'"):
        DataSource.from_section({**base_params["data"], "source": "ftp"})


def test_record_names_the_folder_not_its_path(tmp_path):
    """The record is a DVC output: the same data read from two places must give the same bytes in dvc.lock."""
    records = [load_dir(copy_tiny(tmp_path / where), TINY_ROWS, None).record for where in ("a", "b/c")]
    assert records[0] == records[1]
    assert records[0]["location"] == "cola"


def test_only_a_network_failure_counts_as_the_hub_unreachable():
    import httpx
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    from acceptability.data.cola import unreachable

    assert unreachable(ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub"))
    assert unreachable(httpx.ConnectError("Name or service not known"))
    assert unreachable(LocalEntryNotFoundError("offline, and not in the cache"))
    assert not unreachable(EntryNotFoundError("no such file at this revision"))
    assert not unreachable(ValueError("a bug of ours"))
