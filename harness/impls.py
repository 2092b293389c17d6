"""The implementations the property tests and goldens run, through one code path.

Each entry exposes ``index_topk``, ``sparse_attention`` and ``msa_attention`` with the public
signatures and takes CPU tensors (the harness builds problems on the CPU):

* ``reference``: the float64 oracle itself (its properties are checked too);
* ``msa_sgl``: the public API, i.e. the Triton kernels, on ``KERNEL_DEVICE`` (CUDA when there
  is one, else the CPU through Triton's interpreter); inputs are moved there and results back.

Running kernels in the interpreter is slow, so kernel properties draw fewer and smaller
problems (``KERNEL_PROBLEMS``, ``kernel_examples()``); on a GPU they draw full-size ones, bf16
included (the interpreter computes bf16 ``tl.dot`` wrongly, so the CPU skips bf16).
"""

from __future__ import annotations

import contextlib
import os

import torch

import msa_sgl
from msa_sgl import reference

KERNEL_DEVICE = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
ON_GPU = KERNEL_DEVICE.type == "cuda"
KERNEL_DTYPES = ("float32", "float16", "bfloat16") if ON_GPU else ("float32", "float16")
KERNEL_PROBLEMS = (
    dict(dtypes=("float16", "bfloat16"))
    if ON_GPU
    else dict(dtypes=KERNEL_DTYPES, max_keys=256, work_budget=1 << 20, max_batch=3)
)
# Hypothesis examples per kernel property, by profile (the reference's come from the profile)
_KERNEL_EXAMPLES = {"ci": 50, "dev": 4, "thorough": 200}


def kernel_examples() -> int:
    if "MSA_KERNEL_EXAMPLES" in os.environ:
        return int(os.environ["MSA_KERNEL_EXAMPLES"])
    profile = os.environ.get("HYPOTHESIS_PROFILE", "ci")
    return _KERNEL_EXAMPLES.get(profile, 25) * (8 if ON_GPU else 1)


def _to(x, device):
    return x.to(device) if isinstance(x, torch.Tensor) else x


def on_cpu(kwargs: dict) -> dict:
    """A call's keyword arguments with every tensor moved to the CPU (where the float64
    reference runs), the other values as they are."""
    return {k: _to(v, "cpu") for k, v in kwargs.items()}


def _back(result):
    if isinstance(result, tuple):
        return tuple(r.cpu() for r in result)
    return result.cpu()


class KernelImpl:
    """msa_sgl's public API on KERNEL_DEVICE, taking and returning CPU tensors.

    ``main_branch`` forces the main-branch form for every call size ("q_outer", "split" or
    "kv_outer"; None keeps the size heuristic), ``workspace_bytes`` the KV-outer workspace (a
    small one makes it work in several passes: by KV group, then by rows), and ``index_splits``
    the number of pieces of the index branch's block range (with a small merge chunk, so the
    finalize kernel merges in several chunks), by setting the module knobs of msa_sgl.ops for the
    duration of a call.
    """

    def __init__(self, device: torch.device = KERNEL_DEVICE, main_branch=None, workspace_bytes=None,
                 index_splits=None):
        self.device = device
        self.main_branch = main_branch
        self.workspace_bytes = workspace_bytes
        self.index_splits = index_splits

    def __repr__(self):
        return (f"KernelImpl({self.device}, main_branch={self.main_branch}, workspace_bytes={self.workspace_bytes}, "
                f"index_splits={self.index_splits})")

    @contextlib.contextmanager
    def knobs(self):
        """This variant's module knobs of msa_sgl.ops, set for the duration of the block (for
        code that calls the kernels by another road, e.g. MSADecodeWrapper)."""
        from msa_sgl.ops import index_branch as ib
        from msa_sgl.ops import main_branch as sa

        saved = sa.KV_OUTER_MIN_QUERIES, sa.KV_OUTER_WORKSPACE_BYTES, sa.SPLIT_MAX_QUERIES
        saved_ib = ib._FORCE_N_SPLIT, ib._CHUNK_CANDIDATES, ib._SPLIT_FLOOR, ib._SPLIT_PIECES
        if self.main_branch is not None:
            sa.KV_OUTER_MIN_QUERIES = 0 if self.main_branch == "kv_outer" else 1 << 62
            sa.SPLIT_MAX_QUERIES = 1 << 62 if self.main_branch == "split" else -1
        if self.workspace_bytes is not None:
            sa.KV_OUTER_WORKSPACE_BYTES = self.workspace_bytes
        if self.index_splits is not None:
            # several chunks in the merge, and the runtime split floor engaged at toy sizes (a
            # range of n blocks: splits of at least min(3, n / 4) blocks, trailing ones skipped)
            ib._FORCE_N_SPLIT, ib._CHUNK_CANDIDATES, ib._SPLIT_FLOOR, ib._SPLIT_PIECES = self.index_splits, 8, 3, 4
        try:
            yield
        finally:
            sa.KV_OUTER_MIN_QUERIES, sa.KV_OUTER_WORKSPACE_BYTES, sa.SPLIT_MAX_QUERIES = saved
            ib._FORCE_N_SPLIT, ib._CHUNK_CANDIDATES, ib._SPLIT_FLOOR, ib._SPLIT_PIECES = saved_ib

    def _call(self, fn, kwargs):
        with self.knobs():
            return _back(fn(**{k: _to(v, self.device) for k, v in kwargs.items()}))

    def index_topk(self, **kwargs):
        return self._call(msa_sgl.index_topk, kwargs)

    def sparse_attention(self, **kwargs):
        return self._call(msa_sgl.sparse_attention, kwargs)

    def msa_attention(self, **kwargs):
        return self._call(msa_sgl.msa_attention, kwargs)


KERNELS = KernelImpl()
# every main-branch form the dispatcher can pick, for the property tests to draw from
KERNEL_VARIANTS = (
    KernelImpl(main_branch="q_outer"),
    KernelImpl(main_branch="split", index_splits=5),  # the index merged 8 candidates at a time
    KernelImpl(main_branch="kv_outer"),
    KernelImpl(main_branch="kv_outer", workspace_bytes=1),  # one tile of rows per pass
)

IMPLEMENTATIONS = {
    "reference": reference,
    "msa_sgl": KERNELS,
    "msa_sgl_kv_outer": KERNEL_VARIANTS[1],
}


def run_both_branches(impl, problem):
    """index_topk then sparse_attention on the selection: (topk_idx, out, lse)."""
    topk_idx = impl.index_topk(**problem.index_args())
    out, lse = impl.sparse_attention(**problem.attention_args(topk_idx), return_lse=True)
    return topk_idx, out, lse
