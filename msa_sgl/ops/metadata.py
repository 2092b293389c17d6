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
    """Builds :class:`BlockTiles` with torch ops on the device (no synchronisation): one stable
    radix sort of the entries' keys, then binary searches (no scatters, no scans)."""
    _, hkv, topk = topk_idx.shape
    dev = topk_idx.device
    E = (row_hi - row_lo) * hkv * topk
    sel = topk_idx[row_lo:row_hi].reshape(-1)  # [E] int32
    e = torch.arange(E, device=dev, dtype=torch.int32)
    t = row_lo + e // (hkv * topk)
    g = (e // topk) % hkv
    req = token_req[t]
    cu = cu_seqlens_q
    pos = seq_lens_k[req] - (cu[req + 1] - cu[req]) + (t - cu[req])
    valid = (sel >= 0) & (sel <= pos // block_size)  # a block past the query's own attends nothing
    n_keys = hkv * batch * max_pages
    key_dtype = torch.int32 if n_keys < 2**31 - 1 else torch.int64  # 32-bit keys: half the radix passes
    key = (g.to(key_dtype) * batch + req) * max_pages + sel
    key = torch.where(valid, key, n_keys)  # invalid entries sort last
    sorted_key, order = torch.sort(key, stable=True)
    idx = torch.arange(E, device=dev, dtype=torch.int64)
    seg_start = torch.searchsorted(sorted_key, sorted_key, side="left")  # first entry of each key
    is_valid = sorted_key != n_keys
    head = is_valid & ((idx - seg_start) % tokens_per_tile == 0)
    # tiles <= ceil(valid entries / tokens_per_tile) + number of distinct (group, request, block)
    grid = max(1, min(E, triton.cdiv(E, tokens_per_tile) + min(E, n_keys)))
    tile_of = torch.cumsum(head.to(torch.int32), 0, dtype=torch.int32) - 1  # non-decreasing
    tile_of = torch.where(is_valid, tile_of, grid)  # invalid entries after every tile
    tiles = torch.arange(grid + 1, device=dev, dtype=torch.int32)
    tile_first = torch.searchsorted(tile_of, tiles, side="left", out_int32=True)
    tile_n = torch.searchsorted(tile_of, tiles, side="right", out_int32=True) - tile_first
    return BlockTiles(order.to(torch.int32), sorted_key, tile_first, tile_n, grid, row_lo, row_hi)
