"""The implementations the property tests and goldens run, through one code path.

Each entry exposes ``index_topk``, ``sparse_attention`` and ``msa_attention`` with the public
signatures. ``reference`` is the float64 oracle itself (its properties are checked too);
``msa_sgl`` is the public API. Kernel backends join here as they land.
"""

from __future__ import annotations

import msa_sgl
from msa_sgl import reference

IMPLEMENTATIONS = {
    "reference": reference,
    "msa_sgl": msa_sgl,
}
