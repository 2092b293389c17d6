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


@dataclass(frozen=True)
class BlockTiles:
    """Reverse index of one range of query rows: for every (group, request, logical block), the
    (query, slot) entries that selected it, cut into tiles of at most ``tokens_per_tile``.

    Entries are numbered ``e = ((t - row_lo) * Hkv + g) * topk + slot``. ``order`` lists the valid
    entries sorted by (group, request, block), stably (so by query within a block: deterministic);
    ``sorted_key[i] = (g * batch + request) * max_pages + block`` for ``order[i]``. Tile ``i``
    covers ``order[tile_first[i] : tile_first[i] + tile_n[i]]``; tiles past the real count have
    ``tile_n == 0``. ``grid`` bounds the number of tiles from shapes alone.
    """

    order: torch.Tensor
    sorted_key: torch.Tensor
    tile_first: torch.Tensor
    tile_n: torch.Tensor
    grid: int
    row_lo: int
    row_hi: int


def build_block_tiles(topk_idx, cu_seqlens_q, seq_lens_k, token_req, row_lo, row_hi, batch, max_pages, block_size,
                      tokens_per_tile) -> BlockTiles:
    """Builds :class:`BlockTiles` with torch ops on the device (no synchronisation)."""
    _, hkv, topk = topk_idx.shape
    dev = topk_idx.device
    n_rows = row_hi - row_lo
    E = n_rows * hkv * topk
    sel = topk_idx[row_lo:row_hi].reshape(-1).to(torch.int64)  # [E]
    e = torch.arange(E, device=dev)
    t = row_lo + e // (hkv * topk)
    g = (e // topk) % hkv
    req = token_req[t].to(torch.int64)
    cu = cu_seqlens_q.to(torch.int64)
    pos = seq_lens_k.to(torch.int64)[req] - (cu[req + 1] - cu[req]) + (t - cu[req])
    valid = (sel >= 0) & (sel <= pos // block_size)  # a block past the query's own attends nothing
    invalid_key = torch.iinfo(torch.int64).max
    key = torch.where(valid, (g * batch + req) * max_pages + sel, invalid_key)
    sorted_key, order = torch.sort(key, stable=True)
    is_valid = sorted_key != invalid_key
    idx = torch.arange(E, device=dev)
    new_seg = torch.ones_like(is_valid)
    new_seg[1:] = sorted_key[1:] != sorted_key[:-1]
    seg_start = torch.cummax(torch.where(new_seg, idx, 0), dim=0).values
    head = is_valid & ((idx - seg_start) % tokens_per_tile == 0)
    tile_id = torch.cumsum(head.to(torch.int64), 0) - 1
    # tiles <= ceil(valid entries / tokens_per_tile) + number of distinct (group, request, block)
    grid = max(1, min(E, triton.cdiv(E, tokens_per_tile) + min(E, hkv * batch * max_pages)))
    dummy = torch.full_like(tile_id, grid)
    tile_first = torch.zeros(grid + 1, dtype=torch.int32, device=dev)
    tile_first.scatter_(0, torch.where(head, tile_id, dummy), idx.to(torch.int32))
    tile_n = torch.zeros(grid + 1, dtype=torch.int32, device=dev)
    tile_n.scatter_add_(0, torch.where(is_valid, tile_id, dummy), is_valid.to(torch.int32))
    return BlockTiles(order.to(torch.int32), sorted_key, tile_first, tile_n, grid, row_lo, row_hi)
