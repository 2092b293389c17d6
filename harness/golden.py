"""Golden cases: small, self-describing MSA problems with their float64 reference answers.

Layout under ``tests/golden/``: ``manifest.json`` (one entry per case: config, shapes, seed,
dtypes, tolerance, versions, payload checksum) and ``<name>.npz`` (inputs, selected blocks,
outputs, LSE). bfloat16 tensors are stored as their uint16 bit patterns (numpy has no bf16) and
restored from the manifest's dtype. Regenerate with ``python ci/regen_golden.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

import msa_sgl
from msa_sgl import MSAConfig, reference

from .problems import Problem, ProblemSpec
from .tolerance import BOUNDS

GOLDEN_DIR = Path(__file__).resolve().parent.parent / "tests" / "golden"
INPUTS = ("q", "k_cache", "v_cache", "q_idx", "k_idx_cache", "page_table", "cu_seqlens_q", "seq_lens_k")

CASES: Dict[str, ProblemSpec] = {
    "prefill_fp32_many_blocks": ProblemSpec(
        q_lens=(150,), seq_lens=(150,), block_size=16, topk=4, num_kv_heads=1, group_size=2,
        head_dim=32, index_dim=16, dtype="float32", seed=11, layout_seed=12,
    ),
    "varlen_fp16_init_local": ProblemSpec(
        q_lens=(70, 0, 1, 33), seq_lens=(70, 40, 200, 161), block_size=16, topk=5, num_init_blocks=1,
        num_local_blocks=2, num_kv_heads=2, group_size=4, head_dim=32, index_dim=32, dtype="float16",
        seed=21, layout_seed=22, extra_pages=3, extra_cols=2,
    ),
    "mtp_decode_bf16": ProblemSpec(
        q_lens=(8, 3, 16), seq_lens=(300, 129, 512), block_size=32, topk=6, num_kv_heads=2, group_size=8,
        head_dim=64, index_dim=32, dtype="bfloat16", seed=31, layout_seed=32, poison="big",
    ),
    "ties_fp16": ProblemSpec(
        q_lens=(40, 12), seq_lens=(256, 100), block_size=16, topk=3, num_kv_heads=2, group_size=2,
        head_dim=16, index_dim=16, dtype="float16", ties=True, seed=41, layout_seed=42,
    ),
    "m3_ratios_fp16": ProblemSpec(
        q_lens=(24, 1), seq_lens=(250, 192), block_size=32, topk=4, num_kv_heads=4, group_size=16,
        head_dim=64, index_dim=64, dtype="float16", seed=51, layout_seed=52, extra_pages=1,
    ),
    "all_blocks_dense_fp32": ProblemSpec(
        q_lens=(64, 5), seq_lens=(100, 130), block_size=32, topk=8, num_kv_heads=2, group_size=2,
        head_dim=16, index_dim=16, dtype="float32", seed=61, layout_seed=62, poison="neg_big",
    ),
}


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16)
    return t.numpy()


def _from_numpy(a: np.ndarray, dtype: str) -> torch.Tensor:
    if dtype == "bfloat16":
        return torch.from_numpy(a.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(a.copy())


def _versions() -> dict:
    return {
        "msa_sgl": msa_sgl.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _spec_json(spec: ProblemSpec) -> dict:
    d = dataclasses.asdict(spec)
    d["q_lens"], d["seq_lens"] = list(spec.q_lens), list(spec.seq_lens)
    return d


def regenerate(out_dir: Path = GOLDEN_DIR) -> List[str]:
    """Writes every case of CASES and the manifest; returns the case names."""
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = {"format": 1, "generated_with": _versions(), "cases": []}
    for name, spec in CASES.items():
        problem = Problem.from_spec(spec)
        args = problem.msa_args()
        topk_idx = reference.index_topk(**problem.index_args())
        out, lse = reference.sparse_attention(**problem.attention_args(topk_idx), return_lse=True)
        arrays = {k: _to_numpy(args[k]) for k in INPUTS}
        arrays.update(topk_idx=topk_idx.numpy(), out=out.numpy(), lse=lse.numpy())
        path = out_dir / f"{name}.npz"
        np.savez_compressed(path, **arrays)
        bound = BOUNDS[getattr(torch, spec.dtype)]
        manifest["cases"].append(
            {
                "name": name,
                "payload": path.name,
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                "description": problem.describe(),
                "config": dataclasses.asdict(problem.config),
                "spec": _spec_json(spec),
                "dtypes": {k: str(args[k].dtype).replace("torch.", "") for k in INPUTS},
                "shapes": {k: list(args[k].shape) for k in INPUTS} | {"topk_idx": list(topk_idx.shape)},
                "outputs": "topk_idx int32 (reference selection); out, lse float64 (reference)",
                "tolerance": dataclasses.asdict(bound),
            }
        )
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return list(CASES)


@dataclasses.dataclass
class GoldenCase:
    name: str
    entry: dict
    args: dict  # msa_attention keyword arguments
    topk_idx: torch.Tensor
    out: torch.Tensor
    lse: torch.Tensor

    @property
    def config(self) -> MSAConfig:
        return self.args["config"]


def load_manifest(golden_dir: Path = GOLDEN_DIR) -> dict:
    return json.loads((golden_dir / "manifest.json").read_text())


def load_case(entry: dict, golden_dir: Path = GOLDEN_DIR) -> GoldenCase:
    path = golden_dir / entry["payload"]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != entry["sha256"]:
        raise ValueError(f"{path}: sha256 {digest} does not match the manifest's {entry['sha256']}")
    with np.load(path) as data:
        args = {k: _from_numpy(data[k], entry["dtypes"][k]) for k in INPUTS}
        topk_idx = torch.from_numpy(data["topk_idx"].copy())
        out, lse = torch.from_numpy(data["out"].copy()), torch.from_numpy(data["lse"].copy())
    args["config"] = MSAConfig(**entry["config"])
    return GoldenCase(entry["name"], entry, args, topk_idx, out, lse)
