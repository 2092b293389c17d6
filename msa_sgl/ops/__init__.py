"""Triton kernels of msa_sgl (arguments validated by msa_sgl.api before they get here).

* ``index_branch.py``: ``index_topk``, exp-free block scoring with a running top-k on chip.
* ``main_branch.py``: ``sparse_attention``, query-outer and KV-outer forms.
* ``metadata.py``: per-call metadata built on the device (tile maps, the reverse index).

``INTERPRETED`` tells whether Triton built them for its CPU interpreter (TRITON_INTERPRET=1 at
import time).
"""

from .index_branch import index_topk
from .main_branch import _sparse_attn_fwd_kernel, sparse_attention

# Triton picks interpreter or compiler when a kernel is decorated; ask the kernel itself.
INTERPRETED = type(_sparse_attn_fwd_kernel).__name__ == "InterpretedFunction"

__all__ = ["index_topk", "sparse_attention", "INTERPRETED"]
