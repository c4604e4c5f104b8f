"""The teacher's pieces: split-archive reassembly, perturbed sentences, the distillation loss, and calibration applied
the same way on every path (torch, ONNX fp32 and int8, the API, Lambda)."""

import json
import shutil
import zipfile
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import sha256, train_config
from test_serving import Server, post

from acceptability.core.config import AUGMENT_OPERATIONS, AugmentConfig, ExportConfig, ModelSource
from acceptability.core.errors import UserError
from acceptability.data.augment import (
    BOUNDARIES,
    FUNCTION_WORDS,
    LEGACY_OPERATIONS,
    OPERATIONS,
    by_operation,
    lemmas,
    perturbations,
)
from acceptability.data.pretrained import fetch_pretrained
from acceptability.inference.calibration import ece, fit_temperature, probabilities, reliability

PARTS = [f"tiny-model-part-{i:03d}" for i in (1, 2, 3)]


def fake_part_distributions(model_dir, site, pieces: int = 3) -> None:
    """Installed distributions as the mpnet packages are: each holds one piece of a split zip of the model folder."""
    archive = site / "model.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(model_dir.iterdir()):
            zipped.write(path, f"tiny-model/{path.name}")
    data = archive.read_bytes()
    size = -(-len(data) // pieces)
    for i, name in enumerate(PARTS):
        package = site / f"{name.replace('-', '_')}"
        (package / "input").mkdir(parents=True)
        piece = f"tiny-model.zip.{i + 1:03d}"
        (package / "input" / piece).write_bytes(data[i * size : (i + 1) * size])
        info = site / f"{name.replace('-', '_')}-0.0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0.1\n")
        (info / "RECORD").write_text(f"{package.name}/input/{piece},,\n{info.name}/METADATA,,\n{info.name}/RECORD,,\n")
    archive.unlink()


@pytest.fixture
def parts_site(tiny_model_dir, tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    fake_part_distributions(tiny_model_dir, site)
    monkeypatch.syspath_prepend(str(site))
    return site


def parts_cfg(tiny_model_dir, **changes) -> dict:
    cfg = {
        "model_name_or_path": "tiny",
        "revision": None,
        "source": "auto",
        "package": None,
        "package_parts": PARTS,
        "dir": None,
        "sha256": sha256(tiny_model_dir / "model.safetensors"),
    }
    return cfg | changes


def test_split_archive_packages_are_reassembled_and_verified(parts_site, tiny_model_dir, tmp_path):
    record = fetch_pretrained(ModelSource.from_section(parts_cfg(tiny_model_dir)), tmp_path / "model")
    assert record["source"] == "package" and record["sha256_verified"]
    assert record["location"] == "packages:" + ",".join(f"{name}==0.0.1" for name in PARTS)
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        assert sha256(tmp_path / "model" / name) == sha256(tiny_model_dir / name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "site"]  # the staging zip is gone


def test_a_wrong_piece_fails_the_pin_and_never_falls_back(parts_site, tiny_model_dir, tmp_path):
    pin = "0" * 64
    with pytest.raises(UserError, match=f"does not match model.sha256 = {pin}"):
        fetch_pretrained(ModelSource.from_section(parts_cfg(tiny_model_dir, sha256=pin)), tmp_path / "model")
    (parts_site / "tiny_model_part_002/input/tiny-model.zip.002").write_bytes(b"not a piece")
    with pytest.raises(UserError, match="do not make a model zip"):
        fetch_pretrained(ModelSource.from_section(parts_cfg(tiny_model_dir)), tmp_path / "model2")


def test_perturbed_sentences_are_seeded_and_each_differs_from_its_source():
    frame = pd.DataFrame({"idx": [3, 5, 8], "sentence": ["The cat sat on the mat.", "Go!", "the the"]})
    first, again = perturbations(frame, 2, 0), perturbations(frame, 2, 0)
    pd.testing.assert_frame_equal(first, again)
    assert first["source_idx"].tolist() == [3, 3, 5, 5, 8, 8] and first["copy"].tolist() == [0, 1] * 3
    sources = dict(zip(frame["idx"], frame["sentence"], strict=True))
    for row in first.itertuples():
        assert row.sentence != sources[row.source_idx]
        words, changed = sources[row.source_idx].split(), row.sentence.split()
        assert len(changed) - len(words) == {"swap": 0, "drop": -1, "duplicate": 1}[row.operation]
    assert set(first.loc[first["source_idx"] == 5, "operation"]) == {"duplicate"}  # one word: only duplication
    assert not perturbations(frame, 2, 1).equals(first)


def test_each_epoch_takes_the_next_perturbed_copies_and_every_gold_row():
    from acceptability.model.datamodule import LengthGroupedBatches, RotatingCopies

    gold, copies = 5, 4
    copy = np.concatenate([np.full(gold, -1), np.tile(np.arange(copies), 6)])  # 6 sentences, 4 copies each
    rows = RotatingCopies(copy, per_epoch=2)
    taken = [set(copy[rows(epoch)]) for epoch in range(3)]
    assert taken == [{-1, 0, 1}, {-1, 2, 3}, {-1, 0, 1}]
    assert all(len(rows(epoch)) == gold + 2 * 6 for epoch in range(3))
    assert np.array_equal(RotatingCopies(copy, per_epoch=4)(1), np.arange(len(copy)))  # all the copies: every row
    assert set(copy[RotatingCopies(copy, per_epoch=3)(1)]) == {-1, 3, 0, 1}  # wraps around

    batches = LengthGroupedBatches(np.ones(len(copy), int), 4, seed=0, epoch_rows=rows)
    for epoch in range(2):
        batches.set_epoch(epoch)
        seen = [row for batch in batches for row in batch]
        assert len(batches) == 5 and sorted(seen) == rows(epoch).tolist()


def test_copies_of_other_operations_give_way_to_their_sentences_kept_copies():
    from acceptability.model.datamodule import only_operations

    # sentence 7: copies by swap, duplicate, drop, duplicate; sentence 9: duplicate only (nothing to give way to)
    names = ["swap", "duplicate", "drop", "duplicate", "duplicate", "duplicate"]
    copies = {
        "idx": np.arange(6) + 100,
        "labels": np.full(6, -1),
        "teacher_logits": np.arange(12, dtype=np.float32).reshape(6, 2),
        "copy": np.array([0, 1, 2, 3, 0, 1]),
        "source": np.array([7, 7, 7, 7, 9, 9]),
        "operation": np.array([AUGMENT_OPERATIONS.index(name) for name in names]),
        "input_ids": np.arange(12, dtype=np.int32),
        "offsets": np.array([0, 1, 3, 6, 7, 10, 12]),
    }
    kept = only_operations(copies, ["swap", "drop"], "augmented.npz")
    assert kept["idx"].tolist() == [100, 100, 102, 102, 104, 105]  # duplicates -> swap, drop in turn; 9 keeps its own
    assert kept["copy"].tolist() == [0, 1, 2, 3, 0, 1]  # the slots stay: each epoch the same rows and steps
    assert kept["teacher_logits"][1].tolist() == [0.0, 1.0]
    assert kept["offsets"].tolist() == [0, 1, 2, 5, 8, 11, 13]
    assert kept["input_ids"].tolist() == [0, 0, 3, 4, 5, 3, 4, 5, 7, 8, 9, 10, 11]
    assert only_operations(copies, None, "augmented.npz") is copies
    with pytest.raises(UserError, match=r"augment_operations=\['move'\], but the teacher's copies were made by "):
        only_operations(copies, ["move"], "augmented.npz")
    with pytest.raises(UserError, match="augmented.npz does not say which operation made each copy: re-run"):
        only_operations({key: copies[key] for key in copies if key != "operation"}, ["swap"], "augmented.npz")


def test_kept_operations_are_distinct_known_names_and_unused_without_copies():
    default = train_config(augmented_per_sentence=0).augment_operations  # idle without copies
    assert default is not None and "duplicate" not in default and {"swap", "drop", "clause"} <= set(default)
    with pytest.raises(UserError, match=r"augment_operations must be a list of distinct ones of \[.swap., .drop."):
        train_config(augment_operations=["swap", "swap"])


def test_a_missing_part_is_named_and_never_falls_back_to_the_hub(parts_site, tiny_model_dir, tmp_path):
    shutil.rmtree(next(parts_site.glob("tiny_model_part_002*.dist-info")))
    with pytest.raises(UserError, match=f"model.package_parts: {PARTS[1]} not installed, while the other parts are"):
        fetch_pretrained(ModelSource.from_section(parts_cfg(tiny_model_dir)), tmp_path / "model")
    assert not (tmp_path / "model").exists()


def test_train_rows_without_teacher_logits_fail_distillation_naming_the_teachers_file(tiny_model_dir, tmp_path):
    from acceptability.data.encode import load_tokenizer, tokenize_frames
    from acceptability.model.datamodule import ColaDataModule

    train = pd.DataFrame({"idx": [0, 1], "sentence": ["The cat sat.", "Go home."], "label": [1, 1]})
    logits = {"train": np.array([[0.0, 1.0], [np.nan, np.nan]], np.float32)}  # row 1 was not the teacher's
    frames = {"train": train, "validation": train}
    meta = tokenize_frames(load_tokenizer(tiny_model_dir, 32), frames, tmp_path, 32, logits)
    with pytest.raises(UserError, match=r"^data/teacher/train.csv has no logits for 1 train rows of .*train.npz"):
        ColaDataModule(tmp_path, train_config(augmented_per_sentence=0), meta["pad_token_id"]).setup()
    plain = train_config(distill_weight=0.0, augmented_per_sentence=0)
    ColaDataModule(tmp_path, plain, meta["pad_token_id"]).setup()  # plain cross-entropy needs none


def test_asking_for_more_copies_per_epoch_than_the_teacher_labelled_names_both_numbers(tiny_model_dir, tmp_path):
    from acceptability.data.encode import load_tokenizer, tokenize_frames
    from acceptability.model.datamodule import ColaDataModule

    train = pd.DataFrame({"idx": [0, 1], "sentence": ["The cat sat.", "Go home."], "label": [1, 1]})
    augmented = perturbations(train, 2, 0).assign(idx=range(4), label=-1)
    logits = {"train": np.zeros((2, 2), np.float32), "augmented": np.zeros((4, 2), np.float32)}
    frames = {"train": train, "validation": train, "augmented": augmented}
    meta = tokenize_frames(load_tokenizer(tiny_model_dir, 32), frames, tmp_path, 32, logits)
    data = ColaDataModule(tmp_path, train_config(batch_size=2, augmented_per_sentence=3), meta["pad_token_id"])
    with pytest.raises(
        UserError, match=r"augmented_per_sentence=3, but the teacher labelled only 2 copies per sentence"
    ):
        data.setup()
    data = ColaDataModule(tmp_path, train_config(batch_size=2, augmented_per_sentence=1), meta["pad_token_id"])
    data.setup()
    assert len(data.splits["train"]) == 6 and len(data.train_dataloader()) == 2  # 2 gold rows + 1 copy of each


def test_shortest_first_logits_are_the_file_order_logits(tiny_model_dir, tmp_path):
    from acceptability.data.encode import load_tokenizer, tokenize_frames
    from acceptability.model.datamodule import split_loader
    from acceptability.model.module import load_classifier
    from acceptability.model.predict import predict_logits
    from acceptability.model.teacher import shortest_first_logits

    sentences = ["A much longer sentence than the others, with many more words in it.", "Go.", "The cat sat.", "Hi"]
    frame = pd.DataFrame({"idx": range(4), "sentence": sentences, "label": [1, 1, 1, 0]})
    meta = tokenize_frames(load_tokenizer(tiny_model_dir, 32), {"train": frame}, tmp_path, 32)
    model = load_classifier(tiny_model_dir)
    expected = predict_logits(model, split_loader(tmp_path / "train.npz", meta["pad_token_id"], 4))
    got = shortest_first_logits(model, tmp_path / "train.npz", meta["pad_token_id"], 2)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def module(distill_weight: float, temperature: float, tiny_model_dir):
    from acceptability.core.config import ModelShape
    from acceptability.model.module import AcceptabilityClassifier

    changes = {"distill_weight": distill_weight, "distill_temperature": temperature, "augmented_per_sentence": 0}
    cfg = train_config(label_smoothing=0.0, **changes)
    return AcceptabilityClassifier(tiny_model_dir, ModelShape("bert_tiny", "cls", None), cfg, None)


def test_distillation_loss_mixes_gold_cross_entropy_and_softened_teacher_kl(tiny_model_dir):
    torch.manual_seed(0)
    logits, teacher = torch.randn(6, 2), torch.randn(6, 2) * 3
    labels = torch.tensor([1, 0, 1, -1, -1, 0])  # -1: a perturbed sentence, only the teacher's logits
    batch = {"labels": labels, "teacher_logits": teacher}
    gold = labels >= 0
    ce = torch.nn.functional.cross_entropy(logits[gold], labels[gold])
    t = 2.0
    p_teacher = torch.softmax(teacher / t, -1)
    kl = (p_teacher * (p_teacher.log() - torch.log_softmax(logits / t, -1))).sum(-1).mean() * t * t
    plain = {"labels": labels.clamp(min=0), "teacher_logits": teacher}  # weight 0: the teacher is ignored
    expected = torch.nn.functional.cross_entropy(logits, plain["labels"])
    assert float(module(0.0, t, tiny_model_dir).loss(logits, plain)) == pytest.approx(float(expected))
    assert float(module(1.0, t, tiny_model_dir).loss(logits, batch)) == pytest.approx(float(kl), rel=1e-5)
    mixed = module(0.3, t, tiny_model_dir).loss(logits, batch)
    assert float(mixed) == pytest.approx(float(0.7 * ce + 0.3 * kl), rel=1e-5)
    # the student matching the teacher exactly leaves only the gold part
    assert float(module(1.0, t, tiny_model_dir).loss(teacher, batch)) == pytest.approx(0.0, abs=1e-6)


def test_temperature_scaling_corrects_a_known_miscalibration_and_keeps_every_decision():
    rng = np.random.default_rng(0)
    score = rng.normal(size=4000) * 2
    labels = (rng.random(4000) < 1 / (1 + np.exp(-score))).astype(int)  # calibrated at temperature 1 by design
    overconfident = np.stack([np.zeros_like(score), score * 4], axis=1)  # 4x too sharp
    temperature = fit_temperature(overconfident[:2000], labels[:2000])  # fitted on one half, scored on the other
    assert temperature == pytest.approx(4.0, rel=0.15)
    before = ece(probabilities(overconfident[2000:]), labels[2000:])
    after = ece(probabilities(overconfident[2000:], temperature), labels[2000:])
    assert before > 0.1 and after < 0.03
    assert (probabilities(overconfident, temperature).argmax(1) == overconfident.argmax(1)).all()
    table = reliability(probabilities(overconfident, temperature), labels)
    assert sum(row["n"] for row in table) == 4000 and table[0]["n"] == 0  # two classes: confidence >= 0.5


def test_calibration_is_applied_on_every_path(exported, tmp_path, monkeypatch):
    """A temperature in the model's config: torch, ONNX fp32 and int8, the HTTP API and Lambda all give
    softmax(raw logits / T), and the card records T."""
    from acceptability.core.params import load_params
    from acceptability.data.encode import load_encoded
    from acceptability.export.build import export_onnx, validation_inputs
    from acceptability.inference.card import read_card
    from acceptability.inference.predictor import Predictor
    from acceptability.model.module import load_classifier
    from acceptability.serving import lambda_handler

    model_dir = tmp_path / "model"
    shutil.copytree(exported / "models/model", model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps(config | {"calibration_temperature": 2.5}))
    params = load_params(exported / "params.yaml")
    arrays, sentences = validation_inputs(exported / "data/tokenized", exported / "data/raw")
    result = export_onnx(
        model_dir,
        {"train": load_encoded(exported / "data/tokenized/train.npz"), "validation": arrays},
        sentences,
        tmp_path / "onnx",
        ExportConfig.from_section(params["export"]),
        64,
        "tiny",
    )
    assert (
        result["calibration_temperature"] == 2.5 and read_card(tmp_path / "onnx")["calibration"]["temperature"] == 2.5
    )

    sentences = ["The cat sat on the mat.", "Cat the mat on sat the."]
    raw = load_classifier(exported / "models/model")  # the same weights, temperature 1
    tokens = [Predictor.load(tmp_path / "onnx", "fp32").tokenizer.encode(s).ids for s in sentences]
    with torch.inference_mode():
        raw_logits = np.stack(
            [raw(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long))[0].numpy() for ids in tokens]
        )
        scaled = load_classifier(model_dir)
        torch_logits = np.stack(
            [scaled(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long))[0].numpy() for ids in tokens]
        )
    expected = probabilities(raw_logits, 2.5)
    assert np.allclose(probabilities(torch_logits), expected, atol=1e-6)
    assert np.allclose(Predictor.load(tmp_path / "onnx", "fp32").probabilities(sentences), expected, atol=1e-5)
    assert np.allclose(Predictor.load(tmp_path / "onnx", "int8").probabilities(sentences), expected, atol=0.05)

    served_variant = "int8" if read_card(tmp_path / "onnx")["int8"]["servable"] else "fp32"
    served = Predictor.load(tmp_path / "onnx", served_variant).probabilities(sentences)[:, 1]
    server = Server(tmp_path / "onnx", tmp_path / "log")
    try:
        api = [p["probabilities"]["acceptable"] for p in post(server, {"sentences": sentences}).json()["predictions"]]
    finally:
        server.stop()
    monkeypatch.setenv("COLA_SERVE_MODEL_DIR", str(tmp_path / "onnx"))
    monkeypatch.setattr(lambda_handler, "_loaded", {})
    aws = [p["probabilities"]["acceptable"] for p in lambda_handler.handler({"sentences": sentences})["predictions"]]
    assert np.allclose(api, served, atol=1e-6) and np.allclose(aws, served, atol=1e-6)


def test_the_default_operations_draw_the_sentences_they_drew_before_the_richer_ones():
    """The committed teacher outputs stay reproducible: the same copies, word for word, as before."""
    frame = pd.DataFrame({"idx": [0, 1], "sentence": ["The cat sat on the mat.", "I drank some water."]})
    drawn = perturbations(frame, 3, 7)
    assert drawn["sentence"].tolist() == [
        "The cat sat on on the mat.",
        "The cat sat on the mat. mat.",
        "The cat sat on mat.",
        "I I drank some water.",
        "drank I some water.",
        "I drank water. some",
    ]
    assert drawn["operation"].tolist() == ["duplicate", "duplicate", "drop", "duplicate", "swap", "swap"]


SENTENCES = [
    "The dogs bark at the mailman when he comes.",
    "I think that she left because it rained.",
    "Bill put the book on the table, and Mary read it.",
    "Which book did you say that John wrote?",
]


def bare(sentence: str) -> list[str]:
    return sorted(word.strip(".,?").lower() for word in sentence.split())


@pytest.mark.parametrize("operation", [op for op in OPERATIONS if op not in LEGACY_OPERATIONS])
def test_each_richer_operation_changes_the_sentence_the_way_its_name_says(operation):
    frame = pd.DataFrame({"idx": range(len(SENTENCES)), "sentence": SENTENCES})
    drawn = perturbations(frame, 6, 0, (operation,))
    assert set(drawn["operation"]) == {operation}  # each of these sentences has what the operation needs
    for row in drawn.itertuples():
        source = SENTENCES[row.source_idx]
        before, after = source.split(), row.sentence.split()
        assert row.sentence != source
        if operation == "inflection":  # one word, in another form of its lemma
            changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
            assert len(changed) == 1 and set(lemmas(changed[0][0])) & set(lemmas(changed[0][1])), changed
        elif operation in FUNCTION_WORDS:  # one word of the class replaced, dropped or inserted
            gone, new = (
                Counter(bare(source)) - Counter(bare(row.sentence)),
                Counter(bare(row.sentence)) - Counter(bare(source)),
            )
            assert set(gone) | set(new) <= set(FUNCTION_WORDS[operation]) and 1 <= len(gone) + len(new) <= 2
        elif operation == "move":  # the same words, in another order
            assert bare(source) == bare(row.sentence) and len(after) == len(before)
        elif operation == "clause":  # the same words around the boundary, or one boundary word fewer
            gone = Counter(bare(source)) - Counter(bare(row.sentence))
            assert not Counter(bare(row.sentence)) - Counter(bare(source))
            assert not gone or (len(gone) == 1 and set(gone) <= set(BOUNDARIES)), gone
            assert row.sentence[0].isupper() and row.sentence[-1] in ".?"
        else:  # argument: a noun phrase after a verb dropped or added
            assert len(after) != len(before)


def test_an_operation_that_cannot_apply_falls_back_to_duplicate_and_says_so():
    frame = pd.DataFrame({"idx": [0], "sentence": ["Birds sing."]})  # no determiner, no boundary
    drawn = perturbations(frame, 2, 0, ("determiner", "clause"))
    assert set(drawn["operation"]) <= {"determiner", "duplicate"}
    clause_only = perturbations(frame, 2, 0, ("clause",))
    assert clause_only["operation"].tolist() == ["duplicate", "duplicate"]


def test_unknown_operations_are_refused_with_the_field_and_the_choices(base_params):
    for wrong in (["swap", "scramble"], "swap", [], ["swap", "swap"]):
        with pytest.raises(UserError, match=r"augment\.operations must be a list of distinct ones of .*inflection"):
            AugmentConfig.from_section({**base_params["teacher"]["augment"], "operations": wrong})
    assert AUGMENT_OPERATIONS == OPERATIONS  # config.py names them without importing the teacher's module


def test_the_teacher_record_counts_copies_and_unacceptable_calls_per_operation():
    operations = pd.Series(["swap", "inflection", "swap", "swap"])
    logits = np.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.5], [0.1, 0.2]], np.float32)  # unacceptable first
    assert by_operation(operations, logits) == {
        "inflection": {"copies": 1, "unacceptable_share": 0.0},
        "swap": {"copies": 3, "unacceptable_share": 0.6667},
    }


def test_the_teacher_stage_trains_each_seed_and_writes_the_mean_of_their_logits(tiny_teacher):
    from acceptability.model.evaluation import score_predictions

    record = json.loads((tiny_teacher / "record.json").read_text())
    assert [member["seed"] for member in record["members"]] == record["params"]["seeds"] == [42, 1]
    assert "seed" not in record["params"]["train"]
    validation = pd.read_csv(tiny_teacher / "validation.csv")
    raw = pd.read_csv(tiny_teacher.parent / "raw/validation.csv")
    logits = validation[["logit_unacceptable", "logit_acceptable"]].to_numpy()
    scores = score_predictions(raw, probabilities(logits)[:, 1])
    assert scores["val"]["mcc"] == pytest.approx(record["scores"]["val"]["mcc"], abs=1e-6)
    live = tiny_teacher.parent.parent / "metrics/teacher"
    metrics = json.loads((live / "metrics.json").read_text())
    assert metrics["val"] == record["scores"]["val"]["mcc"] and set(metrics["seeds"]) == {"42", "1"}
    for member in record["members"]:
        assert metrics["seeds"][str(member["seed"])]["val"] == member["scores"]["val"]["mcc"]
        assert (live / "seeds" / str(member["seed"]) / "metrics.json").is_file()  # each seed's dvclive curves


def test_a_finished_teacher_seed_is_reused_after_an_interruption_unless_its_inputs_changed(
    prepared, params, tmp_path, capsys, monkeypatch
):
    from dataclasses import replace

    monkeypatch.setenv("WANDB_MODE", "offline")

    from acceptability.core.config import ModelShape
    from acceptability.model.teacher import teacher_sections, train_member

    work = tmp_path / "work"
    work.mkdir()
    (work / "pretrained").symlink_to(prepared / "models/pretrained")
    (work / "tokenized").symlink_to(prepared / "data/tokenized")
    shape = ModelShape.from_section(params["model"])
    cfg = teacher_sections(params)[2][0]
    pad = json.loads((prepared / "data/tokenized/meta.json").read_text())["pad_token_id"]
    first = train_member(shape, cfg, work, prepared / "data/raw", tmp_path / "live", pad)
    again = train_member(shape, cfg, work, prepared / "data/raw", tmp_path / "live", pad)
    assert "already trained" in capsys.readouterr().err
    assert again["fine_tuned_sha256"] == first["fine_tuned_sha256"]
    for split in ("train", "validation", "augmented"):
        np.testing.assert_array_equal(again["logits"][split], first["logits"][split])
    train_member(
        shape, replace(cfg, learning_rate=cfg.learning_rate / 2), work, prepared / "data/raw", tmp_path / "l", pad
    )
    assert "already trained" not in capsys.readouterr().err
    assert len(list((prepared / "wandb").glob("offline-run-*"))) == 2  # each training its own W&B run
