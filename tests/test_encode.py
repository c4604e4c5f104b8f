"""The tokenize stage: compact arrays that decode to the tokenizer's ids, and no torch import."""

import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import yaml
from conftest import ROOT, tokenize_with_teacher
from stage_runner import run_stage

from acceptability.data.cola import read_split
from acceptability.data.encode import load_encoded, load_tokenizer


def test_tokenized_rows_match_the_tokenizer(in_tmp, params, tiny_teacher):
    params["data"]["max_seq_length"] = 12
    (in_tmp / "params.yaml").write_text(yaml.safe_dump(params))
    run_stage("download.py")
    tokenize_with_teacher(in_tmp, tiny_teacher)
    arrays = load_encoded(in_tmp / "data/tokenized/train.npz")
    frame = read_split(in_tmp / "data/raw/train.csv")
    tokenizer = load_tokenizer(in_tmp / "models/pretrained", 12)
    assert arrays["labels"].tolist() == frame["label"].tolist()
    assert arrays["idx"].tolist() == frame["idx"].tolist() and len(frame) == 48 - 16  # 16 held out to calibrate
    teacher = pd.read_csv(tiny_teacher / "train.csv").set_index("idx")
    assert np.allclose(arrays["teacher_logits"], teacher.loc[frame["idx"]].to_numpy(), atol=1e-6)
    calibration = load_encoded(in_tmp / "data/tokenized/calibration.npz")
    assert not set(calibration["idx"]) & set(arrays["idx"])
    for i in (0, 17, 31):
        ids = arrays["input_ids"][arrays["offsets"][i] : arrays["offsets"][i + 1]].tolist()
        assert ids == tokenizer.encode(frame.loc[i, "sentence"]).ids
        assert ids[0] == 101 and ids[-1] == 102 and len(ids) <= 12  # [CLS] ... [SEP], truncated
    lengths = np.diff(arrays["offsets"])
    assert lengths.max() == 12


def test_tokenize_stage_never_imports_torch(in_tmp, params, tiny_teacher):
    (in_tmp / "params.yaml").write_text(yaml.safe_dump(params))
    run_stage("download.py")
    shutil.copytree(tiny_teacher, in_tmp / "data/teacher")
    code = (
        "import runpy, sys; sys.argv = ['tokenize_splits.py']; "
        f"runpy.run_path({str(ROOT / 'stages' / 'tokenize_splits.py')!r}, run_name='__main__'); "
        "print('lightning' in sys.modules, 'torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "False False"
