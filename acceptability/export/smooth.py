"""SmoothQuant for dynamic int8: move the outlier channels of a layer's input into its weights.

Dynamic int8 quantizes a layer's whole input with one scale per call, so a few large channels (LayerNorm and GELU
outputs in BERT reach 25 where most channels stay near 2) coarsen every other one. For a layer X·W, a per-channel
factor s gives the same product as (X / s)·(s W): the input gets flatter, the weights (quantized per output column)
take the outliers. s_j = max|X_j|^alpha / max|W_j|^(1 - alpha) (Xiao et al., 2023), rounded to a power of two so that
both multiplications are exact in fp32: the smoothed fp32 graph computes what the original did. The input's division is
a Mul node before the layer, which stays fp32; the layer itself then quantizes like any other.
"""

import re
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

# Ops computing input·weight (+ bias) with the weight as their second input: a fused Attention takes its Q, K and V
# projections that way.
LINEAR_OPS = ("MatMul", "Attention")


def linear_nodes(model: onnx.ModelProto, patterns: list[str]) -> list[onnx.NodeProto]:
    """The linear nodes with a weight initializer whose name matches one of `patterns` (regular expressions)."""
    weights = {tensor.name for tensor in model.graph.initializer}
    return [
        node
        for node in model.graph.node
        if node.op_type in LINEAR_OPS
        and len(node.input) > 1
        and node.input[1] in weights
        and any(re.search(pattern, node.name) for pattern in patterns)
    ]


def input_absmax(graph: Path, inputs: list[str], arrays: dict, rows: int) -> dict[str, np.ndarray]:
    """Each named tensor's largest |value| per channel over the first `rows` rows of `arrays`, one row per call (no
    padding, as served). The graph runs with those tensors added to its outputs."""
    import onnxruntime as ort

    probe = onnx.load(str(graph))
    del probe.graph.output[:]
    probe.graph.output.extend(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in inputs)
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    offsets, found = arrays["offsets"], {}
    for i in range(min(rows, len(offsets) - 1)):
        ids = arrays["input_ids"][offsets[i] : offsets[i + 1]][None].astype(np.int64)
        found_now = session.run(inputs, {"input_ids": ids, "attention_mask": np.ones_like(ids)})
        for name, values in zip(inputs, found_now, strict=True):
            channel_max = np.abs(values).reshape(-1, values.shape[-1]).max(axis=0)
            found[name] = np.maximum(found.get(name, channel_max), channel_max)
    return found


def smoothing_factors(input_max: np.ndarray, weight: np.ndarray, alpha: float) -> np.ndarray:
    """Per input channel, the power of two nearest max|X_j|^alpha / max|W_j|^(1 - alpha)."""
    raw = np.maximum(input_max, 1e-5) ** alpha / np.maximum(np.abs(weight).max(axis=1), 1e-5) ** (1 - alpha)
    return np.exp2(np.round(np.log2(raw))).astype(np.float32)


def topological(model: onnx.ModelProto) -> None:
    """Reorder the graph's nodes so that each comes after the producers of its inputs (ONNX requires it)."""
    ready = {tensor.name for tensor in model.graph.input} | {tensor.name for tensor in model.graph.initializer}
    pending, ordered = list(model.graph.node), []
    while pending:
        waiting = []
        for node in pending:
            if all(name == "" or name in ready for name in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                waiting.append(node)
        if len(waiting) == len(pending):
            raise ValueError(f"the graph has a cycle or a missing input at {waiting[0].name}")
        pending = waiting
    del model.graph.node[:]
    model.graph.node.extend(ordered)


def smooth(graph: Path, out: Path, patterns: list[str], alpha: float, arrays: dict, rows: int) -> list[str]:
    """Write `graph` to `out` with the inputs of the linear nodes matching `patterns` smoothed, the factors measured
    over `rows` rows of `arrays` (train rows: the split the model learnt). Returns the names of the nodes smoothed."""
    from acceptability.core.errors import UserError

    model = onnx.load(str(graph))
    nodes = linear_nodes(model, patterns)
    if patterns and not nodes:
        raise UserError(f"params.yaml: export.smooth_nodes: none of {patterns} matches a linear node of {graph.name}")
    absmax = input_absmax(graph, sorted({node.input[0] for node in nodes}), arrays, rows)
    weights = {tensor.name: tensor for tensor in model.graph.initializer}
    for node in nodes:
        weight = numpy_helper.to_array(weights[node.input[1]])
        factors = smoothing_factors(absmax[node.input[0]], weight, alpha)
        weights[node.input[1]].CopyFrom(numpy_helper.from_array(weight * factors[:, None], node.input[1]))
        inverse = numpy_helper.from_array(1 / factors, f"{node.name}_smooth_inverse")
        model.graph.initializer.append(inverse)
        smoothed = f"{node.name}_smoothed_input"
        division = helper.make_node("Mul", [node.input[0], inverse.name], [smoothed], f"{node.name}_smooth")
        model.graph.node.append(division)
        node.input[0] = smoothed
    topological(model)
    onnx.save(model, str(out))
    return [node.name for node in nodes]
