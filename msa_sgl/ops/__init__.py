"""Triton kernels of msa_sgl (arguments validated by msa_sgl.api before they get here).

* ``index_branch.py``: ``index_topk``, exp-free block scoring with a running top-k on chip
  (``index_ws.py``: its prefill scan warp-specialized in Gluon, Hopper only).
* ``main_branch.py``: ``sparse_attention``, query-outer, split and KV-outer forms
  (``kv_outer_ws.py``: the KV-outer partials warp-specialized in Gluon, Hopper only).
* ``quant.py``: ``quantize_index_keys``, 8-bit index keys (fp8 e4m3, one scale per token).
* ``metadata.py``: per-call metadata built on the device (tile maps, the reverse index).

``INTERPRETED`` tells whether Triton built them for its CPU interpreter (TRITON_INTERPRET=1 at
import time).
"""

from . import index_branch, main_branch, metadata
from .index_branch import IndexLaunch, index_topk, launch_index, plan_index
from .main_branch import _sparse_attn_fwd_kernel, launch_q_outer, launch_split, sparse_attention, split_workspace
from .metadata import pdl_enabled, tile_grid
from .quant import quantize_index_keys

# Triton picks interpreter or compiler when a kernel is decorated; ask the kernel itself.
INTERPRETED = type(_sparse_attn_fwd_kernel).__name__ == "InterpretedFunction"

__all__ = [
    "index_topk", "sparse_attention", "quantize_index_keys", "INTERPRETED",
    # building blocks of msa_sgl.decode (preallocated buffers, launch shapes from shapes only)
    "main_branch", "IndexLaunch", "plan_index", "launch_index", "launch_q_outer", "launch_split", "split_workspace", "tile_grid",
    "pdl_enabled", "metadata", "index_branch",
]
