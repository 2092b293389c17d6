"""Triton kernels of msa_sgl (arguments validated by msa_sgl.api before they get here).

* ``index_topk``: the index branch (index_topk.py), exp-free scoring with a running top-k.
* ``sparse_attention``: the main branch (sparse_attention.py).

``INTERPRETED`` tells whether Triton built them for its CPU interpreter (TRITON_INTERPRET=1 at
import time).
"""

from .index_topk import index_topk
from .sparse_attention import _sparse_attn_fwd_kernel, sparse_attention

# Triton picks interpreter or compiler when a kernel is decorated; ask the kernel itself.
INTERPRETED = type(_sparse_attn_fwd_kernel).__name__ == "InterpretedFunction"

__all__ = ["index_topk", "sparse_attention", "INTERPRETED"]
