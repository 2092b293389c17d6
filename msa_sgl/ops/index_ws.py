"""Prefill index scan for Hopper in Gluon, warp-specialized (``index_branch._INDEX_WS`` and
``index_ws_supported``).

Same work and output as ``index_branch._index_partial_kernel`` for prefill tiles (BLOCK_T tokens x
HKV_P groups, 128 or 256 rows): for each (tile, split) program, the tile's index queries scored
against every block of the split's candidate range, ``max_j <q, k_j>`` a block, a running top-KF
list per row on chip, written as int64 order keys, best first, to ``[rows, n_split, KF]``. The
Triton form issues a block's product, waits for it, reduces it and updates the lists before the
next product starts; two programs an SM overlap only with each other (568-581 TF/s at M3 shapes,
16K chunk after 112K-1008K, H200; benchmarks/NOTES.md v27b). Here, one CTA an SM:

* producer (1 warp): the block's page from the request's page-table row (a block ahead), then a
  TMA copy of the [BLOCK, D] key block (the cache seen as [pages x BLOCK, D]) into a ring of
  STAGES buffers (ready / empty barriers; both consumers free a stage);
* two consumers (4 warps each, one warpgroup), each owning half the tile's rows (their Q rows
  loaded once into shared memory), with two 64-row products in flight at a time: on 256-row
  tiles (long contexts, ``tile_rows``) one block an iteration, the products of its two row
  halves; on 128-row tiles (short ones) two blocks an iteration. The first product's row maxima and list
  update run while the tensor cores compute the second (wait depth 1), then the second's.
  Nothing is in flight over the loop's back edge (an accumulator in flight there makes ptxas
  serialize every warpgroup MMA, C7514; NOTES.md v26).

Measured (H200, v27d): 256-row tiles 669-712 TF/s at 112K-1008K, 1.22-1.24x the Triton scan; 128-row
tiles 1.16-1.22x; at P <= 16K a tie or up to 20% slower from process to process. Neither halving
the L2 traffic a FLOP (256 rows) nor the consumers taking turns on the tensor cores (v27e) took it
past ~74% of the tensor cores' rate; what holds it there is not found.

The scores are the same warpgroup MMAs (m64n128k16, fp32 sums in the same order) as the Triton
kernel's, so the lists are its lists on the same tiles, bit for bit (tests/unit/test_index_ws.py,
on the GPU). They are sorted by rank (each key's count of better keys) before the store.
Supported: bf16 / fp16 keys (8-bit keys take the Triton kernel), 128- or 256-row tiles, D = 128,
BLOCK = 128, KF = 16, the key cache contiguous [pages, BLOCK, D] and 16-byte aligned (TMA), q's
last dimension contiguous, no PDL.
"""

from __future__ import annotations

import torch

from ._gluon import HAVE_GLUON

if HAVE_GLUON:
    from ._gluon import (TensorDescriptor, fence_async_shared, gl, gluon, mbarrier, tma, warpgroup_mma,
                         warpgroup_mma_wait)
    from ._gluon import warps_barrier as _warps_barrier

_STAGES = 4
# Rows of a prefill tile the Gluon scan takes (index_branch.plan_index, plan_supported, tile_rows): 128 (32 tokens
# x 4 groups; each consumer two blocks an iteration) or 256 (64 tokens; each consumer one block an iteration, its
# two 64-row products in flight: each key block loaded from L2 once for twice the rows). 256 where the page table
# has more than _WIDE_MIN_PAGES - 1 blocks a request, else 128. H200, M3 shapes, one 16K chunk after P tokens, ms
# at 128 / 256 rows (benchmarks/NOTES.md v28b, two processes at P = 0 and 16K): P = 0 0.241-0.247 / 0.269-0.271,
# 16K 0.617-0.634 / 0.645-0.657, 32K 1.036 / 1.025, 48K 1.429 / 1.408, 64K 1.825 / 1.800, 80K 2.238 / 2.184,
# 112K 3.048-3.059 / 2.911-2.938, 1008K 25.7-25.8 / 24.5-24.7.
_WIDE_MIN_PAGES = 257
# Tests and A/B runs only: force the tile rows (128 or 256; None: tile_rows' rule).
_TILE_ROWS = None
_PRODUCER_REGS = 40
_CONSUMER_REGS = 232
_MAXNREG = 168
_NONE = gl.constexpr(-9223372036854775807 - 1) if HAVE_GLUON else None  # an order key below every real one


if HAVE_GLUON:

    @gluon.jit
    def _ix_tile(TILE_CUM, CU_SEQLENS, SEQ_LENS, batch, n_split, BLOCK_T: gl.constexpr, BLOCK: gl.constexpr,
                 N_INIT: gl.constexpr, N_LOCAL: gl.constexpr, SEARCH_STEPS: gl.constexpr, SPLIT_FLOOR: gl.constexpr,
                 SPLIT_PIECES: gl.constexpr, LAST_FIRST: gl.constexpr):
        """This program's tile and split, as the Triton kernel finds them: the request ``i_b``,
        its first query row and length, its keys, the tile's first token ``t0``, the split's
        first block ``b_lo`` and its block count ``n`` (0: nothing to scan or write)."""
        pid = gl.program_id(0)
        i_split = gl.program_id(1)
        n_tiles = gl.load(TILE_CUM + batch)
        valid = pid < n_tiles
        if LAST_FIRST:
            pid = n_tiles - 1 - pid
        pid = gl.where(valid, pid, 0)
        lo = pid * 0
        hi = lo + batch
        for _ in gl.static_range(SEARCH_STEPS):  # metadata.find_tile_request
            mid = (lo + hi) // 2
            go = gl.load(TILE_CUM + mid) <= pid
            lo = gl.where(go, mid, lo)
            hi = gl.where(go, hi, mid)
        i_b = lo
        q_start = gl.load(CU_SEQLENS + i_b)
        q_len = gl.load(CU_SEQLENS + i_b + 1) - q_start
        seq_len = gl.load(SEQ_LENS + i_b)
        t0 = (pid - gl.load(TILE_CUM + i_b)) * BLOCK_T
        # the tile's candidate range [N_INIT, hi): its last real token's (positions grow with rows)
        t_last = gl.minimum(t0 + BLOCK_T - 1, q_len - 1)
        top = gl.maximum((seq_len - q_len + t_last) // BLOCK - N_LOCAL, -1) + 1
        n_cand = gl.maximum(top - N_INIT, 0)
        per_split = gl.maximum((n_cand + n_split - 1) // n_split,
                               gl.minimum(SPLIT_FLOOR, (n_cand + SPLIT_PIECES - 1) // SPLIT_PIECES))
        b_lo = N_INIT + i_split * per_split
        b_hi = gl.minimum(b_lo + per_split, top)
        n = gl.where(valid & (t0 < q_len), gl.maximum(b_hi - b_lo, 0), 0)
        return i_b, q_start, q_len, seq_len, t0, b_lo, n

    @gluon.jit
    def _ix_page(pt_row, b, num_pages, ok):
        """Physical page of block ``b`` (index_branch._clamped_page); none loaded where not ``ok``."""
        page = gl.load(pt_row + b, mask=ok, other=0)
        return gl.minimum(gl.maximum(page, 0), num_pages - 1)

    @gluon.jit
    def _ix_producer(k_desc, PAGE_TABLE, TILE_CUM, CU_SEQLENS, SEQ_LENS, batch, num_pages, stride_pt_b, n_split,
                     k_bufs, k_ready, k_empty, BLOCK_T: gl.constexpr, BLOCK: gl.constexpr, N_INIT: gl.constexpr,
                     N_LOCAL: gl.constexpr, SEARCH_STEPS: gl.constexpr, SPLIT_FLOOR: gl.constexpr,
                     SPLIT_PIECES: gl.constexpr, LAST_FIRST: gl.constexpr, STAGES: gl.constexpr):
        """The split's key blocks into the ring, each block's page loaded a block ahead."""
        i_b, q_start, q_len, seq_len, t0, b_lo, n = _ix_tile(TILE_CUM, CU_SEQLENS, SEQ_LENS, batch, n_split, BLOCK_T,
                                                             BLOCK, N_INIT, N_LOCAL, SEARCH_STEPS, SPLIT_FLOOR,
                                                             SPLIT_PIECES, LAST_FIRST)
        pt_row = PAGE_TABLE + i_b.to(gl.int64) * stride_pt_b
        page_next = _ix_page(pt_row, b_lo, num_pages, n > 0)
        for i in range(n):
            s = i % STAGES
            page = page_next
            page_next = _ix_page(pt_row, b_lo + gl.minimum(i + 1, n - 1), num_pages, n > 0)
            mbarrier.wait(k_empty.index(s), ((i // STAGES) & 1) ^ 1)
            rdy = k_ready.index(s)
            mbarrier.expect(rdy, k_desc.block_type.nbytes)
            tma.async_copy_global_to_shared(k_desc, [page * BLOCK, 0], rdy, k_bufs.index(s))

    @gluon.jit
    def _ix_insert(top_s, top_i, s, b, ok):
        """index_branch._topk_insert: offer (s[r], b) to each row's list where ok[r]."""
        worst_s = gl.min(top_s, axis=1)
        is_worst = top_s == worst_s[:, None]
        worst_i = gl.max(gl.where(is_worst, top_i, -2147483647), axis=1)
        better = ok & ((s > worst_s) | ((s == worst_s) & (b < worst_i)))
        slot = is_worst & (top_i == worst_i[:, None]) & better[:, None]
        top_s = gl.where(slot, s[:, None], top_s)
        top_i = gl.where(slot, b, top_i)
        return top_s, top_i

    @gluon.jit
    def _ix_offer(acc, top_s, top_i, b, ok, row_l: gl.constexpr):
        """Block ``b``'s scores ``acc`` [64, BLOCK] offered to the rows' lists: each row's maximum
        (in the lists' row layout: the same registers) where ``ok``."""
        return _ix_insert(top_s, top_i, gl.convert_layout(gl.max(acc, axis=1), row_l), b, ok)

    @gluon.jit
    def _ix_load_q(Q, q_s, r0, t0, q_start, q_len, n, stride_qt, stride_qh, HKV: gl.constexpr, HKV_P: gl.constexpr,
                   D: gl.constexpr):
        """Tile rows r0 .. r0 + 63 of Q into shared memory (zeros past the request or without
        blocks): row r = token (t0 + r // HKV_P) x group (r % HKV_P), 16 bytes a thread."""
        ld_l: gl.constexpr = gl.BlockedLayout([1, 8], [4, 8], [4, 1], [1, 0])
        o_rq = r0 + gl.arange(0, 64, layout=gl.SliceLayout(1, ld_l))
        o_d = gl.arange(0, D, layout=gl.SliceLayout(0, ld_l))
        tq = t0 + o_rq // HKV_P
        gq = o_rq % HKV_P
        m_q = (tq < q_len) & (gq < HKV) & (n > 0)
        p_q = Q + (q_start + tq).to(gl.int64)[:, None] * stride_qt + gq[:, None] * stride_qh + o_d[None, :]
        q_s.slice(r0, 64).store(gl.load(p_q, mask=m_q[:, None], other=0.0))

    @gluon.jit
    def _ix_rows(r0, t0, q_len, seq_len, HKV: gl.constexpr, HKV_P: gl.constexpr, BLOCK: gl.constexpr,
                 N_LOCAL: gl.constexpr, K_FREE: gl.constexpr, KF: gl.constexpr, lst: gl.constexpr):
        """Tile rows r0 .. r0 + 63 in the lists' layout: token, group, real, last candidate
        block, their empty lists (index_branch._empty_list) and the lists' columns."""
        o_r = r0 + gl.arange(0, 64, layout=gl.SliceLayout(1, lst))
        o_k = gl.arange(0, KF, layout=gl.SliceLayout(0, lst))
        tok = t0 + o_r // HKV_P
        grp = o_r % HKV_P
        m_r = (tok < q_len) & (grp < HKV)
        last_cand = gl.where(m_r, (seq_len - q_len + tok) // BLOCK - N_LOCAL, -1)  # candidates b <= last_cand
        col = gl.zeros([64, KF], gl.int32, lst) + o_k[None, :]
        top_s = gl.where(col < K_FREE, float("-inf"), float("inf"))
        top_i = -1 - col
        return tok, grp, m_r, last_cand, col, top_s, top_i

    @gluon.jit
    def _ix_store(OUT_KEY, top_s, top_i, col, tok, grp, m_r, q_start, n, n_split, HKV: gl.constexpr,
                  KF: gl.constexpr):
        """The lists as order keys (index_branch._order_key), written best first: each key at its
        rank (the keys better than it; ties - only the unused slots' - by column)."""
        sc = gl.where(top_s == 0.0, 0.0, top_s)
        bits = sc.to(gl.int32, bitcast=True)
        bits = gl.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
        key = (bits.to(gl.int64) << 32) | (2147483647 - top_i).to(gl.int64)
        key = gl.where(top_i >= 0, key, _NONE)
        rank = gl.zeros_like(col)
        for k in gl.static_range(KF):
            kk = gl.max(gl.where(col == k, key, _NONE), axis=1)
            rank += ((kk[:, None] > key) | ((kk[:, None] == key) & (col > k))).to(gl.int32)
        row = (q_start + tok).to(gl.int64) * HKV + grp
        off = (row[:, None] * n_split + gl.program_id(1)) * KF + rank
        gl.store(OUT_KEY + off, key, mask=(m_r & (n > 0))[:, None] & (col < KF))

    @gluon.jit
    def _ix_consumer(WG: gl.constexpr, Q, OUT_KEY, PAGE_TABLE, TILE_CUM, CU_SEQLENS, SEQ_LENS, batch, num_pages,
                     stride_qt, stride_qh, stride_pt_b, n_split, q_s, k_bufs, k_ready, k_empty, HKV: gl.constexpr,
                     HKV_P: gl.constexpr, BLOCK_T: gl.constexpr, D: gl.constexpr, BLOCK: gl.constexpr,
                     N_INIT: gl.constexpr, N_LOCAL: gl.constexpr, K_FREE: gl.constexpr, KF: gl.constexpr,
                     SEARCH_STEPS: gl.constexpr, SPLIT_FLOOR: gl.constexpr, SPLIT_PIECES: gl.constexpr,
                     LAST_FIRST: gl.constexpr, STAGES: gl.constexpr):
        """The warpgroup's rows of the tile (64 of a 128-row tile, 128 of a 256-row one): their Q
        rows into shared memory, the split's blocks (see the module docstring), the lists sorted
        and stored."""
        HALVES: gl.constexpr = BLOCK_T * HKV_P // 128  # 64-row products a block: 1 or 2
        R0: gl.constexpr = WG * 64 * HALVES
        i_b, q_start, q_len, seq_len, t0, b_lo, n = _ix_tile(TILE_CUM, CU_SEQLENS, SEQ_LENS, batch, n_split, BLOCK_T,
                                                             BLOCK, N_INIT, N_LOCAL, SEARCH_STEPS, SPLIT_FLOOR,
                                                             SPLIT_PIECES, LAST_FIRST)
        for h in gl.static_range(HALVES):
            _ix_load_q(Q, q_s, R0 + h * 64, t0, q_start, q_len, n, stride_qt, stride_qh, HKV, HKV_P, D)
        fence_async_shared()
        _warps_barrier()

        s_mma: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                        instr_shape=[16, BLOCK, 16])
        # the lists [64, KF] spread over the threads as the scores' rows are (the row maxima keep
        # their registers)
        lst: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, KF, 16])
        row_l: gl.constexpr = gl.SliceLayout(1, lst)
        tok, grp, m_r, last_cand, col, top_s, top_i = _ix_rows(R0, t0, q_len, seq_len, HKV, HKV_P, BLOCK, N_LOCAL,
                                                               K_FREE, KF, lst)
        q_a = q_s.slice(R0, 64)
        wg_last = gl.max(last_cand, axis=0)  # the first 64 rows' last candidate (their blocks end there)
        if HALVES == 1:
            # two blocks an iteration: both products in flight, the first block's lists updated
            # while the tensor cores compute the second's
            for j in range(0, n, 2):
                i0 = j
                i1 = gl.minimum(j + 1, n - 1)  # (past the last block: the last one again, not offered)
                s0 = i0 % STAGES
                s1 = i1 % STAGES
                mbarrier.wait(k_ready.index(s0), (i0 // STAGES) & 1)
                a = warpgroup_mma(q_a, k_bufs.index(s0).permute((1, 0)), gl.zeros([64, BLOCK], gl.float32, s_mma),
                                  use_acc=False, is_async=True)
                mbarrier.wait(k_ready.index(s1), (i1 // STAGES) & 1)
                c = warpgroup_mma(q_a, k_bufs.index(s1).permute((1, 0)), gl.zeros([64, BLOCK], gl.float32, s_mma),
                                  use_acc=False, is_async=True)
                a = warpgroup_mma_wait(num_outstanding=1, deps=[a])
                b0 = b_lo + i0
                if b0 <= wg_last:  # (also a basic block of its own: ptxas keeps the next wait below it)
                    top_s, top_i = _ix_offer(a, top_s, top_i, b0, b0 <= last_cand, row_l)
                c = warpgroup_mma_wait(num_outstanding=0, deps=[c])
                mbarrier.arrive(k_empty.index(s0), count=1)
                mbarrier.arrive(k_empty.index(s1), count=1, pred=i1 != i0)
                b1 = b_lo + i1
                top_s, top_i = _ix_offer(c, top_s, top_i, b1, (b1 <= last_cand) & (i1 != i0), row_l)
            _ix_store(OUT_KEY, top_s, top_i, col, tok, grp, m_r, q_start, n, n_split, HKV, KF)
        else:
            # one block an iteration, its products for both row halves in flight, the first
            # half's lists updated while the tensor cores compute the second's
            tok2, grp2, m_r2, last2, col2, top_s2, top_i2 = _ix_rows(R0 + 64, t0, q_len, seq_len, HKV, HKV_P, BLOCK,
                                                                     N_LOCAL, K_FREE, KF, lst)
            q_c = q_s.slice(R0 + 64, 64)
            for i in range(n):
                s = i % STAGES
                mbarrier.wait(k_ready.index(s), (i // STAGES) & 1)
                a = warpgroup_mma(q_a, k_bufs.index(s).permute((1, 0)), gl.zeros([64, BLOCK], gl.float32, s_mma),
                                  use_acc=False, is_async=True)
                c = warpgroup_mma(q_c, k_bufs.index(s).permute((1, 0)), gl.zeros([64, BLOCK], gl.float32, s_mma),
                                  use_acc=False, is_async=True)
                a = warpgroup_mma_wait(num_outstanding=1, deps=[a])
                b = b_lo + i
                if b <= wg_last:  # (also a basic block of its own: ptxas keeps the next wait below it)
                    top_s, top_i = _ix_offer(a, top_s, top_i, b, b <= last_cand, row_l)
                c = warpgroup_mma_wait(num_outstanding=0, deps=[c])
                mbarrier.arrive(k_empty.index(s), count=1)
                top_s2, top_i2 = _ix_offer(c, top_s2, top_i2, b, b <= last2, row_l)
            _ix_store(OUT_KEY, top_s, top_i, col, tok, grp, m_r, q_start, n, n_split, HKV, KF)
            _ix_store(OUT_KEY, top_s2, top_i2, col2, tok2, grp2, m_r2, q_start, n, n_split, HKV, KF)

    @gluon.jit
    def _index_ws_kernel(Q, k_desc, PAGE_TABLE, SEQ_LENS, CU_SEQLENS, TILE_CUM, OUT_KEY, batch, num_pages,
                         stride_qt, stride_qh, stride_pt_b, n_split, HKV: gl.constexpr, HKV_P: gl.constexpr,
                         BLOCK_T: gl.constexpr, D: gl.constexpr, BLOCK: gl.constexpr, N_INIT: gl.constexpr,
                         N_LOCAL: gl.constexpr, K_FREE: gl.constexpr, KF: gl.constexpr, SEARCH_STEPS: gl.constexpr,
                         SPLIT_FLOOR: gl.constexpr, SPLIT_PIECES: gl.constexpr, LAST_FIRST: gl.constexpr,
                         STAGES: gl.constexpr, CONSUMER_REGS: gl.constexpr, PRODUCER_REGS: gl.constexpr):
        dtype: gl.constexpr = k_desc.dtype
        q_s = gl.allocate_shared_memory(dtype, [BLOCK_T * HKV_P, D], k_desc.layout)
        k_bufs = gl.allocate_shared_memory(dtype, [STAGES, BLOCK, D], k_desc.layout)
        k_ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        k_empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        for s in gl.static_range(STAGES):
            mbarrier.init(k_ready.index(s), count=1)
            mbarrier.init(k_empty.index(s), count=2)  # both consumers
        gl.warp_specialize([
            (_ix_consumer, (0, Q, OUT_KEY, PAGE_TABLE, TILE_CUM, CU_SEQLENS, SEQ_LENS, batch, num_pages, stride_qt,
                            stride_qh, stride_pt_b, n_split, q_s, k_bufs, k_ready, k_empty, HKV, HKV_P, BLOCK_T, D,
                            BLOCK, N_INIT, N_LOCAL, K_FREE, KF, SEARCH_STEPS, SPLIT_FLOOR, SPLIT_PIECES, LAST_FIRST,
                            STAGES)),
            (_ix_consumer, (1, Q, OUT_KEY, PAGE_TABLE, TILE_CUM, CU_SEQLENS, SEQ_LENS, batch, num_pages, stride_qt,
                            stride_qh, stride_pt_b, n_split, q_s, k_bufs, k_ready, k_empty, HKV, HKV_P, BLOCK_T, D,
                            BLOCK, N_INIT, N_LOCAL, K_FREE, KF, SEARCH_STEPS, SPLIT_FLOOR, SPLIT_PIECES, LAST_FIRST,
                            STAGES)),
            (_ix_producer, (k_desc, PAGE_TABLE, TILE_CUM, CU_SEQLENS, SEQ_LENS, batch, num_pages, stride_pt_b, n_split,
                            k_bufs, k_ready, k_empty, BLOCK_T, BLOCK, N_INIT, N_LOCAL, SEARCH_STEPS, SPLIT_FLOOR,
                            SPLIT_PIECES, LAST_FIRST, STAGES)),
        ], [4, 1], [CONSUMER_REGS, PRODUCER_REGS])


def tile_rows(max_pages: int) -> int:
    """Rows of the prefill tiles a plan gives this scan, by the page table's width (blocks a request):
    256 from _WIDE_MIN_PAGES on, 128 below (``_TILE_ROWS`` overrides)."""
    if _TILE_ROWS is not None:
        return _TILE_ROWS
    return 256 if max_pages >= _WIDE_MIN_PAGES else 128


def plan_supported(device, fp8: bool, dtype, index_dim, block: int, kf: int) -> bool:
    """Whether a plan of these shapes may give its prefill tiles to this scan (its tiles are then
    ``tile_rows(max_pages)`` rows): a Hopper GPU with this Gluon, bf16 / fp16 index queries with keys in their
    dtype (not 8-bit), index head dim 128, block 128, KF 16. The launch checks the rest
    (index_ws_supported: layout, alignment, PDL) and otherwise runs the Triton kernel on the
    plan's tiles."""
    if (not HAVE_GLUON or fp8 or dtype not in (torch.bfloat16, torch.float16) or index_dim != 128 or block != 128
            or kf != 16 or not isinstance(device, torch.device) or device.type != "cuda"):
        return False
    return torch.cuda.get_device_capability(device)[0] == 9


def index_ws_supported(q_idx, k_idx_cache, rows: int, kf: int, fp8: bool, pdl_mode: int) -> bool:
    """Whether ``launch_index_ws`` takes this call: the tensors' own dtype, device and shapes pass
    plan_supported (keys in q's dtype), 128- or 256-row tiles, no PDL, q's last dimension
    contiguous, the key cache contiguous [pages, BLOCK, D] and 16-byte aligned (TMA), its rows
    addressable by int32 TMA coordinates."""
    if pdl_mode or k_idx_cache.dim() != 3 or not plan_supported(q_idx.device, fp8, q_idx.dtype, q_idx.shape[-1],
                                                                 k_idx_cache.shape[1], kf):
        return False
    return (k_idx_cache.dtype == q_idx.dtype and rows in (128, 256) and k_idx_cache.shape[2] == q_idx.shape[-1]
            and q_idx.stride(-1) == 1 and k_idx_cache.is_contiguous() and k_idx_cache.data_ptr() % 16 == 0
            and k_idx_cache.shape[0] * k_idx_cache.shape[1] < 2 ** 31)  # (TMA row coordinates: int32 page x BLOCK)


def launch_index_ws(q_idx, k_idx_cache, page_table, cu_seqlens_q, seq_lens_k, tile_cum, grid_tiles, part_keys, *,
                    hkv_p, block_t, n_split, block, n_init, n_local, k_free, kf, split_floor, split_pieces,
                    last_first):
    """The index partial lists of a call into ``part_keys``, as index_branch._index_partial_kernel
    writes them (grid (tiles, splits); the same lists)."""
    total_q, hkv, d = q_idx.shape
    num_pages = k_idx_cache.shape[0]
    batch = page_table.shape[0]
    gdt = gl.bfloat16 if k_idx_cache.dtype == torch.bfloat16 else gl.float16
    lay = gl.NVMMASharedLayout.get_default_for([block, d], gdt)
    k_desc = TensorDescriptor.from_tensor(k_idx_cache.view(num_pages * block, d), [block, d], lay)
    _index_ws_kernel[(grid_tiles, n_split)](
        q_idx, k_desc, page_table, seq_lens_k, cu_seqlens_q, tile_cum, part_keys, batch, num_pages,
        q_idx.stride(0), q_idx.stride(1), page_table.stride(0), n_split,
        HKV=hkv, HKV_P=hkv_p, BLOCK_T=block_t, D=d, BLOCK=block, N_INIT=n_init, N_LOCAL=n_local, K_FREE=k_free, KF=kf,
        SEARCH_STEPS=max(1, batch.bit_length()), SPLIT_FLOOR=split_floor, SPLIT_PIECES=split_pieces,
        LAST_FIRST=int(last_first), STAGES=_STAGES, CONSUMER_REGS=_CONSUMER_REGS, PRODUCER_REGS=_PRODUCER_REGS,
        num_warps=4, maxnreg=_MAXNREG)
