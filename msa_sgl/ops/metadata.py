"""Per-call metadata shared by the kernels, built on the device from the call's tensors.

Nothing here reads a device value on the host: sizes come from shapes (``total_q``, ``batch``,
``max_pages``), and everything that depends on the lengths is computed by torch ops on the
device, so building it never synchronises and can be captured in a CUDA graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl


@dataclass(frozen=True)
class TileMap:
    """Request-aligned tiles of ``block_t`` query tokens.

    ``tile_cum[b]`` is the index of request ``b``'s first tile (int32 ``[batch + 1]``); a
    kernel launched over ``grid_tiles`` programs finds its request by binary search
    (``search_steps`` iterations) and exits when its id is past ``tile_cum[batch]``.
    """

    block_t: int
    tile_cum: torch.Tensor
    grid_tiles: int
    search_steps: int


def build_tile_map(cu_seqlens_q: torch.Tensor, total_q: int, block_t: int) -> TileMap:
    batch = cu_seqlens_q.shape[0] - 1
    q_lens = cu_seqlens_q[1:] - cu_seqlens_q[:-1]
    tiles = torch.div(q_lens + (block_t - 1), block_t, rounding_mode="floor")
    tile_cum = torch.zeros(batch + 1, dtype=torch.int32, device=cu_seqlens_q.device)
    torch.cumsum(tiles, 0, out=tile_cum[1:])
    # sum_b ceil(q_len_b / block_t) <= ceil(total_q / block_t) + batch, whatever the lengths
    grid_tiles = min(triton.cdiv(total_q, block_t) + batch, total_q) if total_q else 0
    return TileMap(block_t, tile_cum, grid_tiles, max(1, batch.bit_length()))


def token_requests(cu_seqlens_q: torch.Tensor, total_q: int) -> torch.Tensor:
    """int32 ``[total_q]``: the request of every query row (no synchronisation)."""
    batch = cu_seqlens_q.shape[0] - 1
    q_lens = (cu_seqlens_q[1:] - cu_seqlens_q[:-1]).to(torch.int64)
    ids = torch.arange(batch, dtype=torch.int32, device=cu_seqlens_q.device)
    return torch.repeat_interleave(ids, q_lens, output_size=total_q)



@triton.jit
def find_tile_request(tile_cum, pid, batch, SEARCH_STEPS: tl.constexpr):
    """The request owning tile ``pid``: the largest ``b < batch`` with ``tile_cum[b] <= pid``
    (requests without queries have no tiles and are skipped over)."""
    lo = pid * 0
    hi = lo + batch
    for _ in tl.static_range(SEARCH_STEPS):
        mid = (lo + hi) // 2
        go = tl.load(tile_cum + mid) <= pid
        lo = tl.where(go, mid, lo)
        hi = tl.where(go, hi, mid)
    return lo
