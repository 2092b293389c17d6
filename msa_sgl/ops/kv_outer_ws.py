"""KV-outer partial kernel for Hopper in Gluon, warp-specialized (taken by default where it applies:
``main_branch._KV_WS`` and ``ws_supported``).

The Triton form (``main_branch._kv_outer_partial_kernel``) runs one tile per program: load the
tile's K/V block and Q rows, two MMAs, store the partials - a chain of dependent steps that two
8-warp programs an SM overlap only with each other (benchmarks/NOTES.md v15c: latency-bound, DRAM
~30%, issue slots 39%). Triton 3.6 does not warp-specialize for sm_90 on its own (v17d), but its
Gluon dialect lets a kernel name its partitions. Here one persistent program an SM walks tiles
``pid, pid + programs, ...`` with three partitions:

* producer (1 warp): per tile, TMA copies of the K and V block ([BLOCK, D] boxes of the caches
  seen as [pages x BLOCK, Hkv x D]) and the MQ entries' Q rows ([G, D] boxes of q seen as
  [tokens x Hq, D]) into a ring of STAGES buffers, Q and K on one pair of barriers (ready,
  empty) and V on three (loaded, ready once V rows past the request's last key are zeroed - the
  cache holds anything there, and 0 x NaN is NaN - and empty): the consumers free Q and K after
  QK^T and V after PV; the next tile's Q and K are asked for before this tile's V;
* two consumers (4 warps each, one warpgroup): rows 0-63 and 64-127 of the tile (MQ / 2 entries
  x G heads each), software-pipelined over their tiles as FlashAttention-3 does inside a
  warpgroup: entering tile i with its P in registers, a consumer issues S = Q K^T of tile i+1 and
  O = P V of tile i (warpgroup MMAs), waits for S only and runs tile i+1's softmax (base 2; the
  causal mask only where a query of its rows lies in the tile's block) while the tensor cores
  run PV, then waits for PV and writes O / l through a buffer of its own, stored by TMA as one
  [G, D] box per entry; the base-2 LSEs by plain stores. Each tile's metadata (entries, store
  rows, entry count) is loaded a tile before its use.

How it was arrived at, measured from inside the kernel (benchmarks/ws_timeline.py; NOTES.md
v25-v27): a tile costs ~3,700-4,000 SM cycles, of which the softmax ~1,300-1,500, the epilogue
~850 and the MMA waits the rest; the pipelining and the loads moved ahead took it from ~4,900, the
scale folded into the exponent's FFMA and a real branch for the diagonal mask 4-6% more (v27a).

Same tiles (metadata.build_block_tiles), same partial layout and values as the Triton kernel
(rows entry x G + head, partial in q's dtype, LSE = max + log2(sum), base 2), so
``_merge_slots_kernel`` merges either. Supported: bf16 / fp16, G = 16 (MQ = 8), BLOCK = 128,
D = 128 (M3 shapes), caches contiguous as [pages, BLOCK, Hkv, D], q contiguous [tokens, Hq, D],
all three 16-byte aligned (TMA), a Triton whose Gluon takes ``warp_specialize`` as a list of
(function, arguments) partitions (3.6 does; measured there); ``ws_supported`` says whether a
call qualifies, and every other call takes the Triton kernel. Gluon has no interpreter: this
kernel runs on the GPU only; tests/unit/test_kv_outer_ws.py checks it there against the Triton
kernel and the reference, tests/unit/test_hopper_compile.py compiles it for sm_90 on any machine
and checks what ptxas made of the pipelining (no serialized MMAs; the softmax between the waits).
"""

from __future__ import annotations

import torch

from ._gluon import HAVE_GLUON

if HAVE_GLUON:
    from ._gluon import (TensorDescriptor, fence_async_shared, gl, gluon, mbarrier, tma, warpgroup_mma,
                         warpgroup_mma_wait)
    from ._gluon import warps_barrier as _warps_barrier

_STAGES = 2
_PRODUCER_REGS = 40
_CONSUMER_REGS = 232
_MAXNREG = 168  # 12 warps x 32 x 168 <= 64K registers before the partitions re-balance them
_DIAG = True  # the causal mask only on tiles holding a query of their own block (off: on every tile)


if HAVE_GLUON:

    @gluon.jit
    def _zero_rows_past(buf, valid, BLOCK: gl.constexpr, D: gl.constexpr, CHUNK: gl.constexpr):
        """Rows >= ``valid`` of the [BLOCK, D] shared buffer ``buf`` set to 0, CHUNK rows a step
        (one warp)."""
        lay: gl.constexpr = gl.BlockedLayout([1, 8], [2, 16], [1, 1], [1, 0])
        rows_l: gl.constexpr = gl.SliceLayout(1, lay)
        for c in gl.static_range(BLOCK // CHUNK):
            part = buf.slice(c * CHUNK, CHUNK)
            x = part.load(lay)
            o_r = c * CHUNK + gl.arange(0, CHUNK, layout=rows_l)
            x = gl.where((o_r < valid)[:, None], x, gl.zeros_like(x))
            part.store(x)

    @gluon.jit
    def _ws_softmax(b_s, blk, pos, m_r, diag, qk_scale, o_j, BLOCK: gl.constexpr):
        """One tile's scores [ROWS, BLOCK] -> P (fp32, in the scores' registers), the rows' max
        and sum (base 2; 0 and 1 on rows past the tile's entries). The causal mask only where
        ``diag`` (a query of the rows lies in block ``blk``: the rows' least position is below the
        block's last key)."""
        # the scale folded into the exponent (qk_scale > 0: the max of the scaled scores is the
        # scaled max), and the whole softmax in both arms of the branch (a `where` alone in one
        # arm is if-converted into selects that run on every tile)
        if diag:
            b_s = gl.where((blk * BLOCK + o_j)[None, :] <= pos[:, None], b_s, float("-inf"))
            b_m = gl.where(m_r, gl.max(b_s, axis=1) * qk_scale, 0.0)  # finite for real rows
            b_p = gl.exp2(gl.fma(b_s, gl.full(b_s.shape, qk_scale, gl.float32, b_s.type.layout), -b_m[:, None]))
            b_l = gl.where(m_r, gl.sum(b_p, axis=1), 1.0)
        else:
            b_m = gl.where(m_r, gl.max(b_s, axis=1) * qk_scale, 0.0)
            b_p = gl.exp2(gl.fma(b_s, gl.full(b_s.shape, qk_scale, gl.float32, b_s.type.layout), -b_m[:, None]))
            b_l = gl.where(m_r, gl.sum(b_p, axis=1), 1.0)
        return b_p, b_m, b_l

    @gluon.jit
    def _ws_rows_diag(c0, c1, c2, c3, info, n, row_lo, WG: gl.constexpr, EPW: gl.constexpr, NG: gl.constexpr,
                      TOPK: gl.constexpr, BLOCK: gl.constexpr):
        """Whether a consumer's rows (its entries c0..c3 of tile row ``info``, those below ``n``)
        hold a query of the tile's own block: their least position is below the block's last key.
        Scalar loads, none where the consumer has no entry."""
        ok = n > WG * EPW
        blk = gl.load(info + 2, mask=ok, other=0)
        base = (gl.load(info + 7, mask=ok, other=0) - gl.load(info + 6, mask=ok, other=0) + row_lo
                - gl.load(info + 5, mask=ok, other=0))  # a query's position: base + its row
        t_min = c0 // (NG * TOPK)
        t_min = gl.where(WG * EPW + 1 < n, gl.minimum(t_min, c1 // (NG * TOPK)), t_min)
        t_min = gl.where(WG * EPW + 2 < n, gl.minimum(t_min, c2 // (NG * TOPK)), t_min)
        t_min = gl.where(WG * EPW + 3 < n, gl.minimum(t_min, c3 // (NG * TOPK)), t_min)
        return ok & (base + t_min < blk * BLOCK + BLOCK - 1)

    @gluon.jit
    def _ws_tile_count(TILE_INFO, tile, grid):
        """Entries of tile ``tile`` (0: no tile; none loaded past the grid's rows)."""
        return gl.load(TILE_INFO + tile.to(gl.int64) * 8 + 1, mask=tile < grid, other=0)

    @gluon.jit
    def _ws_tile_rows(TILE_E, TILE_INFO, tile, n, row_lo, o_r, WG: gl.constexpr, EPW: gl.constexpr,
                      G: gl.constexpr, NG: gl.constexpr, TOPK: gl.constexpr, MQ: gl.constexpr):
        """What a consumer needs of tile ``tile`` (``n`` entries; none loaded where n = 0): its
        rows' validity, entries and positions [ROWS], the block and its 4 entries as scalars (the
        stores' rows)."""
        info = TILE_INFO + tile.to(gl.int64) * 8
        p_e = TILE_E + tile.to(gl.int64) * MQ + WG * EPW
        m_r = (WG * EPW + o_r // G < n) & (n > 0)
        e = gl.load(p_e + o_r // G, mask=m_r, other=0)
        blk = gl.load(info + 2, mask=n > 0, other=0)
        pos = (gl.load(info + 7, mask=n > 0, other=0) - gl.load(info + 6, mask=n > 0, other=0)
               + (row_lo + e // (NG * TOPK) - gl.load(info + 5, mask=n > 0, other=0)))
        c0, c1, c2, c3 = _ws_entries(p_e, n, WG, EPW)
        return m_r, e, blk, pos, c0, c1, c2, c3

    @gluon.jit
    def _ws_needs_mask(c0, c1, c2, c3, TILE_INFO, tile, n, row_lo, WG: gl.constexpr, EPW: gl.constexpr,
                       NG: gl.constexpr, TOPK: gl.constexpr, BLOCK: gl.constexpr, DIAG: gl.constexpr):
        """Whether the consumer's rows of tile ``tile`` need the causal mask: always where not
        DIAG, else _ws_rows_diag."""
        diag = True
        if DIAG:
            diag = _ws_rows_diag(c0, c1, c2, c3, TILE_INFO + tile.to(gl.int64) * 8, n, row_lo, WG, EPW, NG, TOPK,
                                 BLOCK)
        return diag

    @gluon.jit
    def _ws_entries(p_e, n, WG: gl.constexpr, EPW: gl.constexpr):
        """A consumer's EPW = 4 entries of a tile (0 past ``n``)."""
        gl.static_assert(EPW == 4)
        return (gl.load(p_e, mask=WG * EPW < n, other=0), gl.load(p_e + 1, mask=WG * EPW + 1 < n, other=0),
                gl.load(p_e + 2, mask=WG * EPW + 2 < n, other=0), gl.load(p_e + 3, mask=WG * EPW + 3 < n, other=0))

    @gluon.jit
    def _ws_store_rows(o_desc, ob, n, c0, c1, c2, c3, WG: gl.constexpr, EPW: gl.constexpr, G: gl.constexpr):
        """TMA stores of a consumer's partials (the [G, D] boxes of ``ob``) to the rows of entries
        c0..c3, those below ``n``."""
        if WG * EPW < n:
            tma.async_copy_shared_to_global(o_desc, [c0 * G, 0], ob.slice(0, G))
        if WG * EPW + 1 < n:
            tma.async_copy_shared_to_global(o_desc, [c1 * G, 0], ob.slice(G, G))
        if WG * EPW + 2 < n:
            tma.async_copy_shared_to_global(o_desc, [c2 * G, 0], ob.slice(2 * G, G))
        if WG * EPW + 3 < n:
            tma.async_copy_shared_to_global(o_desc, [c3 * G, 0], ob.slice(3 * G, G))

    @gluon.jit
    def _ws_load_qk(q_desc, k_desc, TILE_E, TILE_INFO, tile, i, row_lo, q_bufs, k_bufs, qk_ready, qk_empty,
                    HQ: gl.constexpr, G: gl.constexpr, NG: gl.constexpr, TOPK: gl.constexpr, MQ: gl.constexpr,
                    D: gl.constexpr, BLOCK: gl.constexpr, STAGES: gl.constexpr):
        """TMA copies of tile ``tile``'s K block and its MQ entries' Q rows into stage i % STAGES,
        once the consumers have freed it."""
        s = i % STAGES
        info = TILE_INFO + tile.to(gl.int64) * 8
        grp = gl.load(info + 3)
        page = gl.load(info + 4)
        mbarrier.wait(qk_empty.index(s), ((i // STAGES) & 1) ^ 1)
        rdy = qk_ready.index(s)
        # every entry slot is copied (past n: entry 0's rows, never stored): a constant byte count
        mbarrier.expect(rdy, MQ * q_desc.block_type.nbytes + k_desc.block_type.nbytes)
        tma.async_copy_global_to_shared(k_desc, [page * BLOCK, grp * D], rdy, k_bufs.index(s))
        qb = q_bufs.index(s)
        for j in gl.static_range(MQ):
            e = gl.load(TILE_E + tile.to(gl.int64) * MQ + j)
            t = row_lo + e // (NG * TOPK)
            tma.async_copy_global_to_shared(q_desc, [t * HQ + grp * G, 0], rdy, qb.slice(j * G, G))

    @gluon.jit
    def _ws_producer(q_desc, k_desc, v_desc, TILE_E, TILE_INFO, grid, row_lo, q_bufs, k_bufs, v_bufs, qk_ready,
                     v_loaded, vready, qk_empty, v_empty, HQ: gl.constexpr, G: gl.constexpr, NG: gl.constexpr,
                     TOPK: gl.constexpr, MQ: gl.constexpr, D: gl.constexpr, BLOCK: gl.constexpr,
                     STAGES: gl.constexpr):
        """Q and K of a tile on the qk_ready / qk_empty pair, V on v_loaded / vready / v_empty (the
        consumers free Q and K after QK^T, V after PV), Q and K a tile ahead of V: the next tile's
        are requested before this tile's V waits for its stage (which PV frees a softmax and an
        epilogue after QK^T frees Q and K; NOTES.md v26b)."""
        pid = gl.program_id(0)
        nprog = gl.num_programs(0)
        tile = pid
        n = _ws_tile_count(TILE_INFO, tile, grid)
        n1 = _ws_tile_count(TILE_INFO, tile + nprog, grid)
        if n > 0:
            _ws_load_qk(q_desc, k_desc, TILE_E, TILE_INFO, tile, 0, row_lo, q_bufs, k_bufs, qk_ready, qk_empty, HQ, G,
                        NG, TOPK, MQ, D, BLOCK, STAGES)
        i = 0
        while n > 0:
            s = i % STAGES
            ph = (i // STAGES) & 1
            nxt = tile + nprog
            n2 = _ws_tile_count(TILE_INFO, nxt + nprog, grid)
            if n1 > 0:
                _ws_load_qk(q_desc, k_desc, TILE_E, TILE_INFO, nxt, i + 1, row_lo, q_bufs, k_bufs, qk_ready,
                            qk_empty, HQ, G, NG, TOPK, MQ, D, BLOCK, STAGES)
            info = TILE_INFO + tile.to(gl.int64) * 8
            blk = gl.load(info + 2)
            grp = gl.load(info + 3)
            page = gl.load(info + 4)
            seq_len = gl.load(info + 7)
            mbarrier.wait(v_empty.index(s), ph ^ 1)
            vl = v_loaded.index(s)
            mbarrier.expect(vl, v_desc.block_type.nbytes)
            tma.async_copy_global_to_shared(v_desc, [page * BLOCK, grp * D], vl, v_bufs.index(s))
            if blk * BLOCK + BLOCK > seq_len:  # the request's last block: V rows past its keys to 0
                mbarrier.wait(vl, ph)
                _zero_rows_past(v_bufs.index(s), seq_len - blk * BLOCK, BLOCK, D, 8)
                fence_async_shared()
            mbarrier.arrive(vready.index(s), count=1)
            i += 1
            tile = nxt
            n = n1
            n1 = n2

    @gluon.jit
    def _ws_consumer(WG: gl.constexpr, o_desc, TILE_E, TILE_INFO, LSE_PART, grid, row_lo, qk_scale, q_bufs, k_bufs,
                     v_bufs, o_bufs, qk_ready, v_loaded, vready, qk_empty, v_empty, G: gl.constexpr,
                     NG: gl.constexpr, TOPK: gl.constexpr, MQ: gl.constexpr, D: gl.constexpr, BLOCK: gl.constexpr,
                     STAGES: gl.constexpr, DIAG: gl.constexpr):
        """Software-pipelined over the tiles (FlashAttention-3's overlap inside one warpgroup):
        entering tile i's iteration, P_i is in registers and no MMA is in flight (an accumulator in
        flight over the loop's back edge makes ptxas serialize every MMA, C7514); it issues S_{i+1}
        = Q K^T of the next tile, then O_i = P_i V_i, waits for S_{i+1} only and runs its softmax
        while the tensor cores run PV, then waits for O_i and stores it (through a buffer of its
        own: the stage's Q is reloaded once QK^T has read it)."""
        ROWS: gl.constexpr = MQ * G // 2  # this warpgroup's rows of the tile
        EPW: gl.constexpr = MQ // 2  # and its entries
        s_mma: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                        instr_shape=[16, BLOCK, 16])
        o_mma: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, D, 16])
        p_op: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_mma, k_width=2)
        row_l: gl.constexpr = gl.SliceLayout(1, s_mma)
        col_l: gl.constexpr = gl.SliceLayout(0, s_mma)
        orow_l: gl.constexpr = gl.SliceLayout(1, o_mma)
        o_r = gl.arange(0, ROWS, layout=row_l)
        o_j = gl.arange(0, BLOCK, layout=col_l)
        dtype: gl.constexpr = o_desc.dtype
        ob = o_bufs.index(WG)
        pid = gl.program_id(0)
        nprog = gl.num_programs(0)
        # prologue: the first tile's S and softmax (the MMA issued unconditionally: a branch around
        # a warpgroup MMA makes ptxas serialize them all; without a tile it reads stage 0 unused)
        tile = pid
        n = _ws_tile_count(TILE_INFO, tile, grid)
        m_r, e, blk, pos, c0, c1, c2, c3 = _ws_tile_rows(TILE_E, TILE_INFO, tile, n, row_lo, o_r, WG, EPW, G, NG, TOPK,
                                                         MQ)
        # the next tile's entry count, loaded a tile ahead of its use (the masks of the next tile's
        # metadata loads hang on it: loaded at their use it cost an L2 round trip a tile, v26c)
        n1 = _ws_tile_count(TILE_INFO, tile + nprog, grid)
        diag = _ws_needs_mask(c0, c1, c2, c3, TILE_INFO, tile, n, row_lo, WG, EPW, NG, TOPK, BLOCK, DIAG)
        mbarrier.wait(qk_ready.index(0), 0, pred=n > 0)
        b_s = warpgroup_mma(q_bufs.index(0).slice(WG * ROWS, ROWS), k_bufs.index(0).permute((1, 0)),
                            gl.zeros([ROWS, BLOCK], gl.float32, s_mma), use_acc=False, is_async=True)
        b_s = warpgroup_mma_wait(num_outstanding=0, deps=[b_s])
        mbarrier.arrive(qk_empty.index(0), count=1, pred=n > 0)
        b_p, b_m, b_l = _ws_softmax(b_s, blk, pos, m_r, diag, qk_scale, o_j, BLOCK)
        p_a = gl.convert_layout(b_p.to(dtype), p_op)
        gl.store(LSE_PART + (e.to(gl.int64) * G + o_r % G), b_m + gl.log2(b_l), mask=m_r)
        i = 0
        while n > 0:
            s = i % STAGES
            ph = (i // STAGES) & 1
            # the next tile's metadata
            nxt = tile + nprog
            n2 = _ws_tile_count(TILE_INFO, nxt + nprog, grid)
            # (its entries d0..d3 are its stores' rows, loaded a tile ahead: loaded before each store
            # they cost a dependent L2 round trip apiece, ~1,000 cycles a tile, v26b)
            m_r1, e1, blk1, pos1, d0, d1, d2, d3 = _ws_tile_rows(TILE_E, TILE_INFO, nxt, n1, row_lo, o_r, WG, EPW, G,
                                                                 NG, TOPK, MQ)
            diag1 = _ws_needs_mask(d0, d1, d2, d3, TILE_INFO, nxt, n1, row_lo, WG, EPW, NG, TOPK, BLOCK, DIAG)
            # S of the next tile (past the last tile: this stage's Q and K again, unused), O of this one
            s1 = (i + 1) % STAGES
            mbarrier.wait(qk_ready.index(s1), ((i + 1) // STAGES) & 1, pred=n1 > 0)
            mbarrier.wait(v_loaded.index(s), ph)
            mbarrier.wait(vready.index(s), ph)
            s_use = gl.where(n1 > 0, s1, s)
            b_s = warpgroup_mma(q_bufs.index(s_use).slice(WG * ROWS, ROWS), k_bufs.index(s_use).permute((1, 0)),
                                gl.zeros([ROWS, BLOCK], gl.float32, s_mma), use_acc=False, is_async=True)
            b_o = warpgroup_mma(p_a, v_bufs.index(s), gl.zeros([ROWS, D], gl.float32, o_mma), use_acc=False,
                                is_async=True)
            b_s = warpgroup_mma_wait(num_outstanding=1, deps=[b_s])  # S_{i+1} (issued first) is done
            mbarrier.arrive(qk_empty.index(s1), count=1, pred=n1 > 0)
            # the next tile's softmax while the tensor cores run PV; P stays fp32 in the scores'
            # registers until PV has read this tile's P (FlashAttention-3's order: converting it
            # into other registers first makes ptxas wait for PV before the softmax)
            if n1 > 0:  # (its own basic block also keeps ptxas from hoisting the PV wait above it)
                b_p1, b_m1, b_l1 = _ws_softmax(b_s, blk1, pos1, m_r1, diag1, qk_scale, o_j, BLOCK)
            else:
                b_p1 = b_s
                b_m1 = gl.zeros([ROWS], gl.float32, row_l)
                b_l1 = gl.full([ROWS], 1.0, gl.float32, row_l)
            gl.store(LSE_PART + (e1.to(gl.int64) * G + o_r % G), b_m1 + gl.log2(b_l1), mask=m_r1)
            b_o, p_a = warpgroup_mma_wait(num_outstanding=0, deps=[b_o, p_a])
            p_a1 = gl.convert_layout(b_p1.to(dtype), p_op)
            mbarrier.arrive(v_empty.index(s), count=1)
            l_o = gl.convert_layout(b_l, orow_l)
            tma.store_wait(0)  # the previous tile's stores have read the buffer (issued a tile ago)
            _warps_barrier()
            # (a reciprocal a row: a division an element is ~4 instructions, a full-range one)
            ob.store((b_o * (1.0 / l_o)[:, None]).to(dtype))
            fence_async_shared()
            _ws_store_rows(o_desc, ob, n, c0, c1, c2, c3, WG, EPW, G)
            i += 1
            tile = nxt
            n = n1
            n1 = n2
            c0, c1, c2, c3 = d0, d1, d2, d3
            p_a = p_a1
            b_l = b_l1
        tma.store_wait(0)

    @gluon.jit
    def _kv_outer_ws_kernel(q_desc, k_desc, v_desc, o_desc, TILE_E, TILE_INFO, LSE_PART, grid, row_lo, qk_scale,
                            HQ: gl.constexpr, G: gl.constexpr, NG: gl.constexpr, TOPK: gl.constexpr, MQ: gl.constexpr,
                            D: gl.constexpr, BLOCK: gl.constexpr, STAGES: gl.constexpr,
                            CONSUMER_REGS: gl.constexpr, PRODUCER_REGS: gl.constexpr, DIAG: gl.constexpr):
        dtype: gl.constexpr = q_desc.dtype
        q_bufs = gl.allocate_shared_memory(dtype, [STAGES, MQ * G, D], q_desc.layout)
        k_bufs = gl.allocate_shared_memory(dtype, [STAGES, BLOCK, D], k_desc.layout)
        v_bufs = gl.allocate_shared_memory(dtype, [STAGES, BLOCK, D], v_desc.layout)
        o_bufs = gl.allocate_shared_memory(dtype, [2, MQ * G // 2, D], o_desc.layout)
        qk_ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        v_loaded = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        vready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        qk_empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        v_empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        for s in gl.static_range(STAGES):
            mbarrier.init(qk_ready.index(s), count=1)
            mbarrier.init(v_loaded.index(s), count=1)
            mbarrier.init(vready.index(s), count=1)
            mbarrier.init(qk_empty.index(s), count=2)  # both consumers
            mbarrier.init(v_empty.index(s), count=2)
        gl.warp_specialize([
            (_ws_consumer, (0, o_desc, TILE_E, TILE_INFO, LSE_PART, grid, row_lo, qk_scale, q_bufs, k_bufs, v_bufs,
                            o_bufs, qk_ready, v_loaded, vready, qk_empty, v_empty, G, NG, TOPK, MQ, D, BLOCK, STAGES,
                            DIAG)),
            (_ws_consumer, (1, o_desc, TILE_E, TILE_INFO, LSE_PART, grid, row_lo, qk_scale, q_bufs, k_bufs, v_bufs,
                            o_bufs, qk_ready, v_loaded, vready, qk_empty, v_empty, G, NG, TOPK, MQ, D, BLOCK, STAGES,
                            DIAG)),
            (_ws_producer, (q_desc, k_desc, v_desc, TILE_E, TILE_INFO, grid, row_lo, q_bufs, k_bufs, v_bufs, qk_ready,
                            v_loaded, vready, qk_empty, v_empty, HQ, G, NG, TOPK, MQ, D, BLOCK, STAGES)),
        ], [4, 1], [CONSUMER_REGS, PRODUCER_REGS])


def ws_supported(q, k_cache, v_cache, g: int, block: int, mq: int) -> bool:
    """Whether ``launch_kv_outer_ws`` takes this call: a Gluon it is written for (HAVE_GLUON), a
    CUDA device of compute capability 9.x, bf16 / fp16, G = 16 (MQ = 8 queries a 128-row tile),
    BLOCK = 128, D = 128, K and V caches of one shape [pages, BLOCK, Hkv, D], q [tokens, Hq, D]
    and both caches contiguous and 16-byte aligned (TMA descriptors). (A strided q, e.g. a view
    of a fused QKV projection, takes the Triton kernel.)"""
    if not HAVE_GLUON or not q.is_cuda or torch.cuda.get_device_capability(q.device)[0] != 9:
        return False
    d = q.shape[-1]
    return (q.dtype in (torch.bfloat16, torch.float16) and k_cache.dtype == q.dtype and v_cache.dtype == q.dtype
            and g == 16 and mq == 8 and block == 128 and d == 128 and q.dim() == 3 and k_cache.dim() == 4
            and v_cache.shape == k_cache.shape and k_cache.shape[1] == block and k_cache.shape[3] == d
            and q.shape[1] == g * k_cache.shape[2]
            and all(t.is_contiguous() and t.data_ptr() % 16 == 0 for t in (q, k_cache, v_cache)))


def _gl_dtype(dtype):
    return gl.bfloat16 if dtype == torch.bfloat16 else gl.float16


def make_descriptors(q, k_cache, v_cache, o_part):
    """The TMA descriptors of one call (q, the K and V caches, the partial outputs), shared by its
    passes: [G, D] boxes of q seen as [tokens x Hq, D] and of ``o_part`` [rows, D], [BLOCK, D]
    boxes of the caches seen as [pages x BLOCK, Hkv x D]."""
    total_q, hq, d = q.shape
    num_pages, block, hkv, _ = k_cache.shape
    g = hq // hkv
    lay = gl.NVMMASharedLayout.get_default_for([block, d], _gl_dtype(q.dtype))
    return (TensorDescriptor.from_tensor(q.view(total_q * hq, d), [g, d], lay),
            TensorDescriptor.from_tensor(k_cache.view(num_pages * block, hkv * d), [block, d], lay),
            TensorDescriptor.from_tensor(v_cache.view(num_pages * block, hkv * d), [block, d], lay),
            TensorDescriptor.from_tensor(o_part, [g, d], lay))


def launch_kv_outer_ws(q, k_cache, v_cache, tiles, o_part, lse_part, scale, topk, mq, num_programs, descs=None):
    """The partial outputs of one pass's tiles (``tiles``: metadata.BlockTiles) into ``o_part``
    [rows, D] / ``lse_part`` [rows] (row = entry x G + head), as ``_kv_outer_partial_kernel``
    writes them. ``num_programs``: persistent programs (one an SM). ``descs``: the call's
    ``make_descriptors`` (built here when None)."""
    hq, d = q.shape[1], q.shape[2]
    g = hq // k_cache.shape[2]
    q_desc, k_desc, v_desc, o_desc = make_descriptors(q, k_cache, v_cache, o_part) if descs is None else descs
    _kv_outer_ws_kernel[(max(1, min(num_programs, tiles.grid)),)](
        q_desc, k_desc, v_desc, o_desc, tiles.tile_entries, tiles.tile_info, lse_part, tiles.grid, tiles.row_lo,
        scale, HQ=hq, G=g, NG=tiles.ng, TOPK=topk, MQ=mq, D=d, BLOCK=k_cache.shape[1], STAGES=_STAGES,
        CONSUMER_REGS=_CONSUMER_REGS, PRODUCER_REGS=_PRODUCER_REGS, DIAG=_DIAG, num_warps=4, maxnreg=_MAXNREG)
