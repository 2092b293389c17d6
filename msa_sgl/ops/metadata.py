"""Per-call metadata shared by the kernels, built on the device from the call's tensors.

Nothing here reads a device value on the host: sizes come from shapes (``total_q``, ``batch``,
``max_pages``), and everything that depends on the lengths is computed by torch ops on the
device, so building it never synchronises and can be captured in a CUDA graph.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl


def num_sms(device: torch.device) -> int:
    """Streaming multiprocessors of a CUDA device (4 for the interpreter: small grids)."""
    if device.type == "cuda":
        return _cuda_sms(device.index if device.index is not None else torch.cuda.current_device())
    return 4


@functools.lru_cache(maxsize=None)
def _cuda_sms(index: int) -> int:
    # cached: torch.cuda.get_device_properties costs tens of us of host time a call, and every
    # launch plan asks (benchmarks/NOTES.md v21)
    return torch.cuda.get_device_properties(index).multi_processor_count


def launch_options(num_warps, num_stages, pdl: bool = False) -> dict:
    """Triton launch keywords for the options that were given (None: the kernel's default);
    ``pdl``: launch with programmatic dependent launch (see :func:`pdl_enabled`)."""
    opts = {}
    if num_warps is not None:
        opts["num_warps"] = num_warps
    if num_stages is not None:
        opts["num_stages"] = num_stages
    if pdl:
        opts["launch_pdl"] = True
    return opts


# How each PDL kernel lets its successor launch: 1 right after its own wait (the successor's
# programs are placed and wait on the chip), 2 when it exits. The chain's last kernel waits for
# its exit: its successor is the next layer's index kernel, long and memory-bound, and placed
# early beside the finishing kernel its programs spread unevenly over the SMs (H200, 8 x 1M:
# 662 us a step against 522; every other choice within 1%, benchmarks/NOTES.md v7). A benchmark
# may set an int (every kernel) or another dict. "index_partial_fused{,_fp8}": the index scan
# when the slot kernel follows it directly (it merges the lists itself). bf16 keys: early is best
# (NOTES.md v13). 8-bit keys: with the scan's queries-x-keys form an early launch cost 1.5-3.7 us a
# batch-1 step against a launch at exit (v13); with the keys-x-queries form, which such steps take
# (index_branch._KEYS_M_*), early saves ~1 us (H100, 1 x 128K 22.6 -> 21.7, 1 x 1M 65.5 -> 64.4; v14).
PDL_TRIGGER = {"index_partial": 1, "index_finalize": 1, "slot_partial": 1, "merge_heads": 2, "q_outer": 2,
               "index_partial_fused": 1, "index_partial_fused_fp8": 1}


@triton.jit
def pdl_wait(USE_PDL: tl.constexpr):
    """Where a kernel of the PDL chain starts reading what the step's earlier kernels wrote:
    wait for them (USE_PDL 1 or 2), and with 1 let the next kernel launch right away (with 2
    it launches when this one exits; see PDL_TRIGGER). Nothing with 0."""
    if USE_PDL:
        tl.extra.cuda.gdc_wait()
    if USE_PDL == 1:
        tl.extra.cuda.gdc_launch_dependents()


def pdl_mode(pdl, kernel: str) -> int:
    """The USE_PDL value of ``kernel`` for a launcher's ``pdl`` argument: False/0 off, True the
    PDL_TRIGGER choice, 1 or 2 that mode. Launch with ``launch_pdl`` exactly when it is > 0 (a
    kernel launched early must wait)."""
    if not pdl:
        return 0
    mode = (PDL_TRIGGER.get(kernel, 1) if isinstance(PDL_TRIGGER, dict) else PDL_TRIGGER) if pdl is True else pdl
    if mode not in (0, 1, 2):
        raise ValueError(f"pdl: expected a mode 0, 1 or 2 for {kernel}, got {mode!r}")
    return int(mode)


def pdl_enabled(device: torch.device) -> bool:
    """Whether a chain of msa_sgl kernels on ``device`` may use programmatic dependent launch
    (PDL): an NVIDIA GPU of sm_90+, a Triton with the gdc intrinsics (3.4+), not Triton's
    interpreter, and not turned off with ``MSA_SGL_PDL=0``.

    With PDL a kernel is launched while its predecessor in the stream still runs; it executes
    ``griddepcontrol.wait`` (``USE_PDL`` kernels: before any load of what an earlier kernel of
    the step wrote, outside every loop) and then lets its own successor launch. This hides the
    launch gap between the small kernels of a decode step; CUDA graphs keep it as a
    programmatic edge."""
    if os.environ.get("TRITON_INTERPRET") == "1" or os.environ.get("MSA_SGL_PDL", "1") == "0":
        return False
    device = torch.device(device)
    if device.type != "cuda" or torch.version.hip is not None:  # griddepcontrol is NVIDIA's
        return False
    if not _TRITON_HAS_PDL:
        return False
    return torch.cuda.get_device_capability(device)[0] >= 9


try:  # launch_pdl and the gdc intrinsics arrived together (Triton 3.4)
    import triton.language.extra.cuda as _tl_cuda

    _TRITON_HAS_PDL = hasattr(_tl_cuda, "gdc_wait") and hasattr(_tl_cuda, "gdc_launch_dependents")
except ImportError:  # pragma: no cover - older Triton
    _TRITON_HAS_PDL = False


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


def build_tile_map(cu_seqlens_q: torch.Tensor, total_q: int, block_t: int, out: torch.Tensor | None = None) -> TileMap:
    """The tiles of a call; ``out`` (int32, at least ``batch + 1`` long, first entry 0): write
    ``tile_cum`` there instead of allocating (MSADecodeWrapper's preallocated buffer)."""
    batch = cu_seqlens_q.shape[0] - 1
    q_lens = (cu_seqlens_q[1:] - cu_seqlens_q[:-1]).clamp_(min=0)  # no tiles for a negative length
    tiles = torch.div(q_lens + (block_t - 1), block_t, rounding_mode="floor")
    if out is None:
        tile_cum = torch.zeros(batch + 1, dtype=torch.int32, device=cu_seqlens_q.device)
    else:
        tile_cum = out[: batch + 1]
    torch.cumsum(tiles, 0, out=tile_cum[1:])
    return TileMap(block_t, tile_cum, tile_grid(total_q, batch, block_t), max(1, batch.bit_length()))


# tile_grid's bound: True the tight one, False the looser ceil(total_q / block_t) + batch of
# sessions up to v31 (benchmarks only, for the A/B of benchmarks/NOTES.md v32a-b). With it one MTP
# request launches its 1 tile, not 2 (the empty one's programs had every other slot: index_branch.
# _SPLIT_MAJOR), and the index scan's splits aim at the tiles a call can have. H200, M3 shapes,
# step us back to back / behind the matmul lead, before v32 -> now (tight, splits first; v32b):
# bf16 keys 1 x 1M q 8 121.3 / 157.2 -> 99.6 / 125.9, 2 x 1M q 8 216.9 / 283.4 -> 179.5 / 226.9,
# 1 x 128K q 8 41.7 / 50.6 -> 38.5 / 45.9, 4 x 128K q 8 98.2 / 128.8 -> 98.2 / 117.9; 8-bit keys 1 x
# 1M q 8 103.8 / 132.0 -> 77.2 / 93.8, 4 x 128K q 8 90.0 / 117.6 -> 90.7 / 111.5; no point slower by
# more than 2% (A/A spread 0-0.4% back to back).
TIGHT_TILE_GRID = True


def tile_grid(total_q: int, batch: int, block_t: int) -> int:
    """Programs that cover every request-aligned tile, from shapes only: the most tiles ``batch``
    requests of ``total_q`` tokens in all can have, whatever the lengths. Each request's
    ceil(q_b / block_t) <= (q_b + block_t - 1) / block_t, so the sum is at most
    floor((total_q + batch * (block_t - 1)) / block_t) (an integer), which lengths of one token
    but for one request reach; and never more than total_q (a tile holds at least one token).
    E.g. one request of 8 tokens in tiles of 8: 1 (the looser ceil(total_q / block_t) + batch
    gave 2, and plan_index aimed the splits at half the SMs' programs)."""
    if not total_q:
        return 0
    if TIGHT_TILE_GRID:
        return min((total_q + batch * (block_t - 1)) // block_t, total_q)
    return min(triton.cdiv(total_q, block_t) + batch, total_q)


def token_requests(cu_seqlens_q: torch.Tensor, total_q: int) -> torch.Tensor:
    """int32 ``[total_q]``: the request of every query row (no synchronisation): the number of
    requests before the last one that end at or before the row (requests without queries are
    passed over). Always in ``[0, batch)``, even for ``cu_seqlens_q`` outside the contract.
    Two ops (an arange, a binary search): 73-171 us of host time on the H100 machine against
    160-401 for the repeat_interleave form before it (benchmarks/NOTES.md v21, host_ab.txt)."""
    batch = cu_seqlens_q.shape[0] - 1
    rows = torch.arange(total_q, dtype=cu_seqlens_q.dtype, device=cu_seqlens_q.device)
    return torch.searchsorted(cu_seqlens_q[1:batch], rows, right=True, out_int32=True)



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


def call_rows(cu_seqlens_q: torch.Tensor, total_q: int, block_t: int,
              out: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[TileMap, torch.Tensor]:
    """The tile map of :func:`build_tile_map` and :func:`token_requests` of a call in one launch
    of _row_requests_kernel: one launch (an empty Triton launch costs ~44 us of host time on the
    GPU machine) where the two took ~570 us there (4K chunk, host_parts_before.txt; the whole
    call's host time fell 27%, benchmarks/NOTES.md v21). Same values for metadata within the
    contract; outside it every row still names a request in ``[0, batch)`` and a request of
    negative length counts no tiles. ``out``: int32 ``(tile_cum, token_req)`` buffers at least
    ``batch + 1`` and ``total_q`` long, written instead of allocating (MSADecodeWrapper's)."""
    batch = cu_seqlens_q.shape[0] - 1
    dev = cu_seqlens_q.device
    if out is None:
        tile_cum = torch.empty(batch + 1, dtype=torch.int32, device=dev)
        token_req = torch.empty(total_q, dtype=torch.int32, device=dev)
    else:
        tile_cum, token_req = out[0][: batch + 1], out[1][:total_q]
    steps = max(1, batch.bit_length())
    _row_requests_kernel[(max(1, triton.cdiv(total_q, _ROWS_CHUNK)),)](
        cu_seqlens_q, token_req, tile_cum, total_q, batch, BLOCK_T=block_t, CHUNK=_ROWS_CHUNK, SEARCH_STEPS=steps)
    return TileMap(block_t, tile_cum, tile_grid(total_q, batch, block_t), steps), token_req


_ROWS_CHUNK = 1024


@triton.jit
def _row_requests_kernel(CU, TOKEN_REQ, TILE_CUM, total_q, batch, BLOCK_T: tl.constexpr, CHUNK: tl.constexpr,
                         SEARCH_STEPS: tl.constexpr):
    """Rows [pid * CHUNK, (pid + 1) * CHUNK): the request of each, the largest ``b < batch`` with
    ``cu[b] <= row`` (requests without queries passed over). The last program also writes
    ``TILE_CUM``: 0, then the running sum over the requests of ceil(max(q_len, 0) / BLOCK_T),
    CHUNK requests at a time."""
    pid = tl.program_id(0)
    o = tl.arange(0, CHUNK)
    r = pid * CHUNK + o  # [CHUNK] rows
    tl.store(TOKEN_REQ + r, find_tile_request(CU, r, batch, SEARCH_STEPS).to(tl.int32), mask=r < total_q)
    if pid == tl.num_programs(0) - 1:
        tl.store(TILE_CUM, 0)
        carry = tl.full([], 0, tl.int32)
        for c in range(0, batch, CHUNK):
            i = c + o  # [CHUNK] requests
            m = i < batch
            n = tl.load(CU + i + 1, mask=m, other=0) - tl.load(CU + i, mask=m, other=0)
            t = (tl.maximum(n, 0) + BLOCK_T - 1) // BLOCK_T  # tiles of each request
            tl.store(TILE_CUM + 1 + i, tl.cumsum(t, 0) + carry, mask=m)
            carry += tl.sum(t, 0)


@dataclass(frozen=True)
class BlockTiles:
    """Reverse index of one pass (a range of query rows, a range of groups): for every (group,
    request, logical block), the (query, slot) entries that selected it, cut into tiles of at most
    ``tokens_per_tile``.

    Entries are numbered ``e = ((t - row_lo) * ng + g - g_lo) * topk + slot`` (the ``ng`` groups
    from ``g_lo`` of rows ``row_lo`` to ``row_hi``). ``order`` (int64) lists the valid
    entries sorted by (group, request, block), stably (so by query within a block: deterministic);
    ``sorted_key[i] = ((g * n_win + w) * batch + request) * max_pages + block`` for ``order[i]`` (``w``
    its query window, 0 without windows; invalid entries last, keyed ``n_keys``). Tile ``i`` is
    described by int32 ``tile_info[i, :]`` = ``TILE_INFO_FIELDS``: it covers ``order[first :
    first + n]``, all of group ``group`` and logical block ``block`` (physical page ``page``,
    clamped to the cache) of a request whose queries start at row ``q_start`` (``q_len`` of them)
    and whose context holds ``seq_len`` keys - what the attention kernel needs, in one 32-byte
    row. Rows past the real count of tiles are zeros (``n == 0``: no tile). ``grid`` bounds the number of
    tiles from shapes alone. ``tile_entries[i, :n]`` repeats ``order[first : first + n]`` (zeros
    past ``n``), so a tile's entries load at its program id, beside its row, not after it.
    Sorting also (after the group) by ``q_window`` rows of queries: see build_block_tiles.
    """

    order: torch.Tensor
    sorted_key: torch.Tensor
    tile_info: torch.Tensor
    grid: int
    row_lo: int
    row_hi: int
    tile_entries: torch.Tensor
    g_lo: int
    ng: int


@triton.jit
def _entry_keys_kernel(TOPK_IDX, TOKEN_REQ, CU_SEQLENS, SEQ_LENS, KEYS, row_lo, g_lo, E, batch, max_pages, n_keys,
                       n_win, q_window, stride_it, stride_ih,
                       NG: tl.constexpr, TOPK: tl.constexpr, BLOCK: tl.constexpr, CHUNK: tl.constexpr,
                       SKIP_DENSE: tl.constexpr = 0):
    """key of entry e = ((t - row_lo) * NG + g - g_lo) * TOPK + slot (the NG groups from g_lo):
    ((g * n_win + w) * batch + request) * max_pages + block when the slot selects a block at or
    before the query's own, else n_keys; w = (t - row_lo) // q_window is the entry's query window
    (n_win = 1: one window). SKIP_DENSE: entries of queries whose own block is below TOPK (every
    block selected: main_branch._dense_rows_kernel's rows) are not valid either."""
    e = tl.program_id(0) * CHUNK + tl.arange(0, CHUNK)
    m = e < E
    t = row_lo + e // (NG * TOPK)
    g = g_lo + (e // TOPK) % NG
    w = (t - row_lo) // q_window
    sel = tl.load(TOPK_IDX + t.to(tl.int64) * stride_it + g * stride_ih + e % TOPK, mask=m, other=-1)
    req = tl.load(TOKEN_REQ + t, mask=m, other=0)
    q_start = tl.load(CU_SEQLENS + req, mask=m, other=0)
    q_len = tl.load(CU_SEQLENS + req + 1, mask=m, other=0) - q_start
    pos = tl.load(SEQ_LENS + req, mask=m, other=0) - q_len + (t - q_start)
    valid = (sel >= 0) & (sel <= pos // BLOCK)  # a block past the query's own attends nothing
    if SKIP_DENSE:
        valid = valid & (pos // BLOCK >= TOPK)
    key = ((g.to(KEYS.dtype.element_ty) * n_win + w) * batch + req) * max_pages + sel
    tl.store(KEYS + e, tl.where(valid, key, n_keys), mask=m)


TILE_INFO_FIELDS = ("first", "n", "block", "group", "page", "q_start", "q_len", "seq_len")


@triton.jit
def _tile_bounds_kernel(SORTED_KEY, RUNS, ORDER, TILE_INFO, TILE_E, PAGE_TABLE, CU_SEQLENS, SEQ_LENS, E, n_keys, batch,
                        max_pages, num_pages, stride_pt_b, n_win, grid,
                        MQ: tl.constexpr, CHUNK: tl.constexpr):
    """Every MQ-th entry of a key's run heads a tile of n = min(MQ, run end - entry) entries; the
    head writes the tile's row of TILE_INFO (BlockTiles.tile_info) and zeros in its row of
    TILE_E past n, every valid entry its place in TILE_E (BlockTiles.tile_entries). Rows
    ``[tiles, grid)`` (no tile) are written as zeros in both (n = 0: the attention kernel's
    programs there exit). RUNS: ``_tile_runs_kernel``'s run starts, run ends and running count
    of heads."""
    i = tl.program_id(0) * CHUNK + tl.arange(0, CHUNK)
    m = i < E
    key = tl.load(SORTED_KEY + i, mask=m, other=n_keys)
    i64 = i.to(tl.int64)
    E64 = tl.zeros([], tl.int64) + E  # not E.to(): the JIT passes E == 1 as a constexpr int
    start = tl.load(RUNS + i64, mask=m, other=0)
    end = tl.load(RUNS + E64 + i64, mask=m, other=0)
    tile = tl.load(RUNS + 2 * E64 + i64, mask=m, other=0) - 1  # inclusive count of heads up to i, minus one
    n_tiles = tl.load(RUNS + 2 * E64 + tl.maximum(E64 - 1, 0), mask=E > 0, other=0)  # invalid entries are last
    valid = m & (key != n_keys)
    e = tl.load(ORDER + i, mask=valid, other=0)
    tl.store(TILE_E + tile.to(tl.int64) * MQ + (i - start) % MQ, e.to(tl.int32), mask=valid)
    head = valid & ((i - start) % MQ == 0)
    n = tl.minimum(end - i, MQ)
    t64 = tile.to(tl.int64)
    unused = (i >= n_tiles) & (i < grid)  # row i of the grid holds no tile (entry i may head another)
    zero = tl.zeros_like(e).to(tl.int32)
    for j in range(0, MQ):  # zeros past each tile's n entries, and in the rows of no tile
        tl.store(TILE_E + t64 * MQ + j, zero, mask=head & (j >= n))
        tl.store(TILE_E + i64 * MQ + j, zero, mask=unused)
    for f in tl.static_range(8):  # metadata.TILE_INFO_FIELDS
        tl.store(TILE_INFO + i64 * 8 + f, zero, mask=unused)
    k = tl.where(head, key, 0)
    blk = k % max_pages
    gb = k // max_pages
    i_b = gb % batch
    page = tl.load(PAGE_TABLE + i_b.to(tl.int64) * stride_pt_b + blk, mask=head, other=0)
    page = tl.minimum(tl.maximum(page, 0), num_pages - 1)  # clamp: never outside the cache
    q_start = tl.load(CU_SEQLENS + i_b, mask=head, other=0)
    q_len = tl.load(CU_SEQLENS + i_b + 1, mask=head, other=0) - q_start
    seq_len = tl.load(SEQ_LENS + i_b, mask=head, other=0)
    row = TILE_INFO + t64 * 8
    tl.store(row + 0, i.to(tl.int32), mask=head)
    tl.store(row + 1, n.to(tl.int32), mask=head)
    tl.store(row + 2, blk.to(tl.int32), mask=head)
    tl.store(row + 3, (gb // batch // n_win).to(tl.int32), mask=head)
    tl.store(row + 4, page.to(tl.int32), mask=head)
    tl.store(row + 5, q_start.to(tl.int32), mask=head)
    tl.store(row + 6, q_len.to(tl.int32), mask=head)
    tl.store(row + 7, seq_len.to(tl.int32), mask=head)


@triton.jit
def _tile_runs_kernel(SORTED_KEY, RUNS, E, n_keys, steps, MQ: tl.constexpr, CHUNK: tl.constexpr):
    """For each entry i of the sorted keys, by binary search (``steps`` > log2(E) halvings): the
    start and the end of its run of equal keys (RUNS[0], RUNS[1]), and whether it heads a tile
    (RUNS[2]: a valid entry MQ-th of its run, 1, else 0). Replaces two torch.searchsorted calls
    and a kernel (host time: one launch for three)."""
    i = tl.program_id(0) * CHUNK + tl.arange(0, CHUNK)
    m = i < E
    key = tl.load(SORTED_KEY + i, mask=m, other=n_keys)
    valid = m & (key != n_keys)
    lo_s = tl.zeros_like(i)  # first entry with sorted key >= key
    hi_s = tl.where(valid, i, 0)
    lo_e = tl.where(valid, i + 1, 0)  # first entry with sorted key > key
    hi_e = tl.where(valid, E, 0)
    for _ in range(steps):
        mid_s = lo_s + (hi_s - lo_s) // 2  # no int32 overflow past 2^30 entries
        go_s = lo_s < hi_s
        lt = tl.load(SORTED_KEY + mid_s, mask=go_s, other=0) < key
        lo_s = tl.where(go_s & lt, mid_s + 1, lo_s)
        hi_s = tl.where(go_s & ~lt, mid_s, hi_s)
        mid_e = lo_e + (hi_e - lo_e) // 2  # no int32 overflow past 2^30 entries
        go_e = lo_e < hi_e
        le = tl.load(SORTED_KEY + mid_e, mask=go_e, other=0) <= key
        lo_e = tl.where(go_e & le, mid_e + 1, lo_e)
        hi_e = tl.where(go_e & ~le, mid_e, hi_e)
    i64 = i.to(tl.int64)
    E64 = tl.zeros([], tl.int64) + E  # not E.to(): the JIT passes E == 1 as a constexpr int
    tl.store(RUNS + i64, lo_s, mask=m)
    tl.store(RUNS + E64 + i64, lo_e, mask=m)
    tl.store(RUNS + 2 * E64 + i64, (valid & ((i - lo_s) % MQ == 0)).to(tl.int32), mask=m)


def build_block_tiles(topk_idx, cu_seqlens_q, seq_lens_k, token_req, row_lo, row_hi, batch, max_pages, block_size,
                      tokens_per_tile, page_table, num_pages, q_window=0, g_lo=0, ng=None,
                      skip_dense=False) -> BlockTiles:
    """Builds :class:`BlockTiles` of rows ``row_lo:row_hi`` and groups ``g_lo:g_lo + ng`` (None: to
    the last) on the device without a synchronisation: keys (one kernel), torch's stable radix
    sort, the runs of equal keys and the tile heads (one kernel of binary searches), a scan of
    the heads, and the tile rows with their zero padding (one kernel): four launches besides the
    sort's, whatever the size. (Eleven ops before the runs kernel and the in-kernel zeros; H100,
    same process, medians of 3 rounds, ms of host time a build before / after: 0.80 / 0.59 at a
    4K chunk, 0.67 / 0.32 at 16K after 16K; GPU time 0.19 / 0.15 and 0.20 / 0.17;
    benchmarks/NOTES.md v22.)

    Tiles come in key order: group, then query window (``q_window`` rows of the pass each; 0 = the
    whole pass), then request and block, then query. With windows, the programs running at one
    time gather the query rows of one window (which can stay in L2) at the price of one tile
    run (and one K/V read) per (window, block) instead of per block. ``skip_dense``: leave out
    the queries whose own block is below ``topk`` (main_branch's dense rows)."""
    _, hkv, topk = topk_idx.shape
    dev = topk_idx.device
    if ng is None:
        ng = hkv - g_lo
    if not (0 <= g_lo and 1 <= ng and g_lo + ng <= hkv):
        raise ValueError(f"build_block_tiles: groups {g_lo}:{g_lo + ng} outside 0:{hkv}")
    if topk_idx.stride(2) != 1:
        raise ValueError(f"build_block_tiles: topk_idx must have unit stride over slots, got strides {topk_idx.stride()}")
    E = (row_hi - row_lo) * ng * topk
    if q_window <= 0 or q_window >= row_hi - row_lo:
        q_window = max(1, row_hi - row_lo)
    n_win = max(1, triton.cdiv(row_hi - row_lo, q_window))  # 1 for an empty pass: no division by zero
    n_keys = hkv * n_win * batch * max_pages
    key_dtype = torch.int32 if n_keys < 2**31 - 1 else torch.int64  # 32-bit keys: half the radix passes
    chunk = 1024
    keys = torch.empty(E, dtype=key_dtype, device=dev)
    _entry_keys_kernel[(triton.cdiv(E, chunk),)](
        topk_idx, token_req, cu_seqlens_q, seq_lens_k, keys, row_lo, g_lo, E, batch, max_pages, n_keys,
        n_win, q_window, topk_idx.stride(0), topk_idx.stride(1), NG=ng, TOPK=topk, BLOCK=block_size, CHUNK=chunk,
        SKIP_DENSE=int(skip_dense),
    )
    sorted_key, order = torch.sort(keys, stable=True)  # invalid entries (key n_keys) last
    runs = torch.empty(3, E, dtype=torch.int32, device=dev)  # run starts, run ends, tile heads
    _tile_runs_kernel[(triton.cdiv(E, chunk),)](sorted_key, runs, E, n_keys, max(1, E.bit_length()),
                                                MQ=tokens_per_tile, CHUNK=chunk)
    runs[2].cumsum_(0)  # each entry's tile: the heads up to it
    # tiles <= ceil(valid entries / tokens_per_tile) + number of distinct (group, request, block)
    grid = max(1, min(E, triton.cdiv(E, tokens_per_tile) + min(E, n_keys)))
    tile_info = torch.empty(grid, len(TILE_INFO_FIELDS), dtype=torch.int32, device=dev)  # rows of no tile: zeros
    tile_entries = torch.empty(grid, tokens_per_tile, dtype=torch.int32, device=dev)
    _tile_bounds_kernel[(triton.cdiv(max(E, grid), chunk),)](
        sorted_key, runs, order, tile_info, tile_entries, page_table, cu_seqlens_q, seq_lens_k, E, n_keys, batch,
        max_pages, num_pages, page_table.stride(0), n_win, grid, MQ=tokens_per_tile, CHUNK=chunk)
    return BlockTiles(order, sorted_key, tile_info, grid, row_lo, row_hi, tile_entries, g_lo, ng)
