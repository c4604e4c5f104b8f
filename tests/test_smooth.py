"""int8's smoothing (acceptability/export/smooth.py) on the tiny exported classifier: exact in fp32, in the int8 graph,
and refused when it names no node."""

import json

import numpy as np
import onnx
import pytest

from acceptability.core.errors import UserError
from acceptability.data.encode import load_encoded
from acceptability.export.build import fuse
from acceptability.export.isa import onnx_logits, session_of
from acceptability.export.smooth import input_absmax, linear_nodes, smooth, smoothing_factors

PATTERNS = [r"^Attention_\d+$", "/intermediate/dense/", r"/layer\.\d+/output/dense/"]


@pytest.fixture(scope="module")
def fused(exported, tmp_path_factory):
    config = json.loads((exported / "models/model/config.json").read_text())
    out = tmp_path_factory.mktemp("smooth") / "fused.onnx"
    fuse(exported / "models/onnx/model.onnx", out, config["num_attention_heads"], config["hidden_size"])
    return out


def test_factors_are_the_nearest_powers_of_two_of_the_alpha_balance():
    input_max = np.array([16.0, 1.0, 10.0, 0.0])
    weight = np.array([[1.0, -0.5], [4.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    assert smoothing_factors(input_max, weight, 1.0).tolist() == [16.0, 1.0, 8.0, 2.0**-17]
    assert smoothing_factors(input_max, weight, 0.5).tolist() == [4.0, 0.5, 4.0, 2.0**-8]  # sqrt(10) = 3.16 -> 4
    assert smoothing_factors(input_max, weight, 0.0).tolist() == [1.0, 0.25, 1.0, 1.0]
    outlier = np.array([32.0, 2.0, 2.0, 2.0])  # one channel 16x the others, the weights even: alpha 1 flattens it
    assert (outlier / smoothing_factors(outlier, np.ones((4, 3)), 1.0)).tolist() == [1.0, 1.0, 1.0, 1.0]


def test_smoothing_changes_no_fp32_logit_and_flattens_the_inputs(exported, fused, tmp_path):
    train = load_encoded(exported / "data/tokenized/train.npz")
    validation = load_encoded(exported / "data/tokenized/validation.npz")
    smoothed = smooth(fused, tmp_path / "smoothed.onnx", PATTERNS, 0.85, train, 200)
    assert sorted(smoothed) == sorted(
        f"Attention_{i}" if kind == "attention" else f"/model/bert/encoder/layer.{i}/{kind}/dense/MatMul"
        for i in (0, 1)
        for kind in ("attention", "intermediate", "output")
    )
    before = onnx_logits(session_of(fused), validation, 1)
    after = onnx_logits(session_of(tmp_path / "smoothed.onnx"), validation, 1)
    assert np.array_equal(before, after)  # powers of two: x / s and s * w are exact

    graph = onnx.load(str(tmp_path / "smoothed.onnx"))
    nodes = linear_nodes(graph, PATTERNS)
    assert all(node.input[0] == f"{node.name}_smoothed_input" for node in nodes)
    inverses = {tensor.name: onnx.numpy_helper.to_array(tensor) for tensor in graph.graph.initializer}
    unsmoothed = [node.input[0] for node in linear_nodes(onnx.load(str(fused)), PATTERNS)]
    original = input_absmax(fused, unsmoothed, train, 200)
    divided = input_absmax(tmp_path / "smoothed.onnx", [node.input[0] for node in nodes], train, 200)
    for node, before, after in zip(nodes, original.values(), divided.values(), strict=True):
        assert np.array_equal(after, before * inverses[f"{node.name}_smooth_inverse"])  # each input divided, exactly


def test_the_int8_graph_quantizes_every_smoothed_layer_after_its_fp32_division(exported):
    graph = onnx.load(str(exported / "models/onnx/model.int8.onnx"))
    ops = [node.op_type for node in graph.graph.node]
    assert "MatMul" not in ops and "Attention" not in ops  # nothing left in fp32 (fp32_nodes is empty)
    divisions = [node for node in graph.graph.node if node.name.endswith("_smooth")]
    assert len(divisions) == 6 and {node.op_type for node in divisions} == {"Mul"}


def test_smooth_nodes_that_match_no_node_are_an_error(fused, tmp_path):
    with pytest.raises(UserError, match=r"export.smooth_nodes: none of \['layer.9/'\] matches a linear node"):
        smooth(fused, tmp_path / "out.onnx", ["layer.9/"], 0.85, {"input_ids": [], "offsets": [0]}, 1)
    assert not (tmp_path / "out.onnx").exists()
