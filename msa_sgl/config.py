"""MSAConfig: the hyper-parameters of MiniMax Sparse Attention (MSA.md section 1)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

__all__ = ["MSAConfig"]

_BLOCK_SIZES = (16, 32, 64, 128)
_MAX_TOPK = 64


@dataclass(frozen=True)
class MSAConfig:
    """Block-sparse attention settings shared by the index and main branches.

    Args:
        block_size: KV block size B in tokens; equals the KV-cache page size. A power of
            two in 16..128 (MiniMax-M3: 128).
        topk: blocks kept per (query token, KV group), 1..64 (M3: 16).
        num_init_blocks: blocks ``0..n_init-1`` always selected (M3: 0).
        num_local_blocks: the query's own block and the ``n_local - 1`` before it, always
            selected; at least 1 (M3: 1). ``num_init_blocks + num_local_blocks <= topk``.
        index_scale: factor on the index logits ``<q_idx, k_idx>``; ``None`` means
            ``1/sqrt(d_idx)``. Any positive finite value (the scale never changes the
            selection of a row, but it is part of the contract of the scores).
        softmax_scale: factor on the attention logits; ``None`` means ``1/sqrt(D)``.

    Raises:
        ValueError: naming the field, what was expected and what came.
    """

    block_size: int = 128
    topk: int = 16
    num_init_blocks: int = 0
    num_local_blocks: int = 1
    index_scale: Optional[float] = None
    softmax_scale: Optional[float] = None

    def __post_init__(self) -> None:
        for name in ("block_size", "topk", "num_init_blocks", "num_local_blocks"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"MSAConfig.{name}: expected an int, got {value!r} ({type(value).__name__})")
        if self.block_size not in _BLOCK_SIZES:
            raise ValueError(
                f"MSAConfig.block_size: expected a power of two in 16..128 {_BLOCK_SIZES}, got {self.block_size}"
            )
        if not 1 <= self.topk <= _MAX_TOPK:
            raise ValueError(f"MSAConfig.topk: expected 1 <= topk <= {_MAX_TOPK}, got {self.topk}")
        if self.num_init_blocks < 0:
            raise ValueError(f"MSAConfig.num_init_blocks: expected >= 0, got {self.num_init_blocks}")
        if self.num_local_blocks < 1:
            raise ValueError(f"MSAConfig.num_local_blocks: expected >= 1, got {self.num_local_blocks}")
        if self.num_init_blocks + self.num_local_blocks > self.topk:
            raise ValueError(
                "MSAConfig: expected num_init_blocks + num_local_blocks <= topk, got "
                f"{self.num_init_blocks} + {self.num_local_blocks} > {self.topk}"
            )
        for name in ("index_scale", "softmax_scale"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"MSAConfig.{name}: expected a float or None, got {value!r}")
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"MSAConfig.{name}: expected a positive finite float or None, got {value!r}")

    def resolved_index_scale(self, d_idx: int) -> float:
        """The index-logit scale for index head dim ``d_idx``."""
        return float(self.index_scale) if self.index_scale is not None else 1.0 / math.sqrt(d_idx)

    def resolved_softmax_scale(self, head_dim: int) -> float:
        """The attention-logit scale for head dim ``head_dim``."""
        return float(self.softmax_scale) if self.softmax_scale is not None else 1.0 / math.sqrt(head_dim)
