"""ONNX logits of the validation rows, natively or under qemu-user as another x86 CPU. Torch-free: it runs under
emulation, where every imported module costs seconds.

int8 answers depend on the CPU's integer instructions. ONNX Runtime's u8*s8 kernel on AVX2 (vpmaddubsw) adds pairs
of products in 16 bits and saturates; VNNI, and the SSE4 kernels, accumulate in 32 bits, exactly. QEMU emulates
neither AVX-512 nor AVX-VNNI, so "vnni" runs as a Nehalem (SSE4.2): the same exact integer arithmetic, measured
slower. Emulated float arithmetic is qemu's softfloat, the same on every host, so these logits repeat bit for bit.

    python -m acceptability.export.isa --model M.onnx --arrays validation.npz --out logits.npy   # the worker
"""

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from acceptability.core.errors import UserError

# Instruction set -> the qemu CPU model whose ONNX Runtime kernels have its integer arithmetic.
EMULATED_CPU = {"avx2": "Haswell", "vnni": "Nehalem"}
QEMU = "qemu-x86_64"


class EmulationError(UserError):
    """qemu-user is missing, or the emulated run failed."""


def pad(rows: list) -> tuple[np.ndarray, np.ndarray]:
    """Token-id rows -> (input_ids, attention_mask), int64, padded with 0 to the longest row."""
    width = max(len(row) for row in rows)
    input_ids = np.zeros((len(rows), width), dtype=np.int64)
    attention_mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = row
        attention_mask[i, : len(row)] = 1
    return input_ids, attention_mask


def batches(arrays: dict[str, np.ndarray], size: int):
    """Validation rows as padded (input_ids, attention_mask) int64 batches, in order."""
    offsets = arrays["offsets"]
    for start in range(0, len(offsets) - 1, size):
        stop = min(start + size, len(offsets) - 1)
        yield pad([arrays["input_ids"][offsets[i] : offsets[i + 1]] for i in range(start, stop)])


def onnx_logits(session, arrays: dict, size: int) -> np.ndarray:
    names = [node.name for node in session.get_inputs()]
    return np.concatenate(
        [session.run(["logits"], dict(zip(names, (ids, mask), strict=True)))[0] for ids, mask in batches(arrays, size)]
    )


def session_of(model: Path, threads: int = 1):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def qemu() -> str:
    """The qemu-user binary: $COLA_QEMU, else qemu-x86_64 on PATH."""
    chosen = os.environ.get("COLA_QEMU")
    if chosen and not os.access(chosen, os.X_OK):
        raise EmulationError(f"COLA_QEMU={chosen!r} is not an executable file")
    found = chosen or shutil.which(QEMU)
    if not found:
        raise EmulationError(
            f"{QEMU} not found: install Debian's qemu-user (`make repro` does), set COLA_QEMU to it, "
            "or set export.emulated_isas to [] to measure int8 on this CPU alone"
        )
    return found


# A batch-1 run costs about this many tokens' work before its first token: what balances the pieces.
ROW_OVERHEAD_TOKENS = 8


def chunks(arrays: dict[str, np.ndarray], parts: int) -> list[dict[str, np.ndarray]]:
    """The rows in `parts` contiguous pieces of about equal work (tokens, plus an overhead per row), each with its
    own input_ids and offsets from 0. Equal row counts left one emulated worker minutes behind the other, since the
    out-of-domain half of validation has longer sentences."""
    offsets, rows = arrays["offsets"], len(arrays["offsets"]) - 1
    parts = min(parts, rows)
    work = np.concatenate([[0], np.cumsum(np.diff(offsets) + ROW_OVERHEAD_TOKENS)])
    bounds = [0]
    for k, target in enumerate(np.linspace(0, work[-1], parts + 1)[1:-1], start=1):
        # at least one row in each piece, and enough rows left for the pieces after it
        bounds.append(int(np.clip(np.searchsorted(work, target), bounds[-1] + 1, rows - (parts - k))))
    bounds.append(rows)
    return [
        {
            "input_ids": arrays["input_ids"][offsets[start] : offsets[stop]],
            "offsets": offsets[start : stop + 1] - offsets[start],
        }
        for start, stop in zip(bounds[:-1], bounds[1:], strict=True)
    ]


def native_isa() -> str | None:
    """The instruction set this CPU's int8 kernels match bit for bit, when it is one of EMULATED_CPU's: "vnni" where
    the CPU has VNNI (exact sums), "avx2" on an AVX2 CPU without AVX-512 (as the emulated Haswell); else None."""
    from acceptability.core.machine import simd

    if platform.machine() not in ("x86_64", "AMD64"):
        return None
    found = set(simd())
    if found & {"avx512_vnni", "avx_vnni"}:
        return "vnni"
    return "avx2" if "avx2" in found and "avx512f" not in found else None


def emulated_logits(model: Path, arrays: dict[str, np.ndarray], isa: str, workers: int = 0) -> np.ndarray:
    """Batch-1 logits of `model` over `arrays`' rows, computed by this Python under qemu as EMULATED_CPU[isa], the
    rows split over `workers` processes (0: one per usable core)."""
    from acceptability.core.machine import usable_cores

    with tempfile.TemporaryDirectory() as tmp:
        processes = []
        for i, part in enumerate(chunks(arrays, workers or usable_cores())):
            rows, out = Path(tmp) / f"rows{i}.npz", Path(tmp) / f"logits{i}.npy"
            np.savez(rows, **part)
            command = [qemu(), "-cpu", EMULATED_CPU[isa], sys.executable, "-m", "acceptability.export.isa"]
            command += ["--model", str(model), "--arrays", str(rows), "--out", str(out)]
            env = os.environ | {"PYTHONWARNINGS": "ignore"}
            processes.append((subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env), out))
        found = []
        for process, out in processes:
            stderr = process.communicate()[1]
            if process.returncode != 0 or not out.is_file():
                tail = "\n".join(line for line in stderr.splitlines() if "TCG doesn't support" not in line)[-2000:]
                raise EmulationError(
                    f"{isa} under qemu ({EMULATED_CPU[isa]}) failed with code {process.returncode}:\n{tail}"
                )
            found.append(np.load(out))
        return np.concatenate(found)


def main() -> None:
    parser = argparse.ArgumentParser(description="batch-1 logits of an ONNX model over tokenized rows")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--arrays", type=Path, required=True, help="an .npz with input_ids and offsets")
    parser.add_argument("--out", type=Path, required=True, help="the .npy to write")
    args = parser.parse_args()
    with np.load(args.arrays) as stored:
        arrays = {key: stored[key] for key in ("input_ids", "offsets")}
    np.save(args.out, onnx_logits(session_of(args.model), arrays, 1))


if __name__ == "__main__":
    main()
