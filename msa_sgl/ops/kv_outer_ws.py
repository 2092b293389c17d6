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
  [tokens x Hq, D]) into a ring of STAGES buffers; V rows past the request's last key are zeroed
  (the cache holds anything there, and 0 x NaN is NaN);
* two consumers (4 warps each, one warpgroup): rows 0-63 and 64-127 of the tile (MQ / 2 entries
  x G heads each): S = Q K^T by warpgroup MMA, the causal mask on the query's own block, softmax
  in base 2, O = P V with P from registers, O / l written over the consumer's half of the Q
  buffer and stored by TMA as one [G, D] box per entry, the base-2 LSEs by plain stores.

Same tiles (metadata.build_block_tiles), same partial layout and values as the Triton kernel
(rows entry x G + head, partial in q's dtype, LSE = max + log2(sum), base 2), so
``_merge_slots_kernel`` merges either. Supported: bf16 / fp16, G = 16 (MQ = 8), BLOCK = 128,
D = 128 (M3 shapes), caches contiguous as [pages, BLOCK, Hkv, D], q contiguous [tokens, Hq, D],
all three 16-byte aligned (TMA), a Triton whose Gluon takes ``warp_specialize`` as a list of
(function, arguments) partitions (3.6 does; measured there); ``ws_supported`` says whether a
call qualifies, and every other call takes the Triton kernel. Gluon has no interpreter: this
kernel runs on the GPU only; tests/unit/test_kv_outer_ws.py checks it there against the Triton
kernel and the reference, tests/unit/test_hopper_compile.py compiles it for sm_90 on any machine.
"""

from __future__ import annotations

import inspect

import torch

try:  # Gluon (triton.experimental.gluon) ships with Triton >= 3.5
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.language.nvidia.hopper import (fence_async_shared, mbarrier, tma, warpgroup_mma,
                                                                  warpgroup_mma_wait)
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor
    # the partitions as a list of (function, arguments) - older Gluon took another form
    HAVE_GLUON = "functions_and_args" in inspect.signature(gl.warp_specialize).parameters
except (ImportError, AttributeError, TypeError, ValueError):  # pragma: no cover - older Triton
    HAVE_GLUON = False

_STAGES = 2
_PRODUCER_REGS = 40
_CONSUMER_REGS = 232
_MAXNREG = 168  # 12 warps x 32 x 168 <= 64K registers before the partitions re-balance them


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
    def _ws_producer(q_desc, k_desc, v_desc, TILE_E, TILE_INFO, grid, row_lo, q_bufs, k_bufs, v_bufs, ready, vready,
                     empty, HQ: gl.constexpr, G: gl.constexpr, NG: gl.constexpr, TOPK: gl.constexpr,
                     MQ: gl.constexpr, D: gl.constexpr, BLOCK: gl.constexpr, STAGES: gl.constexpr):
        pid = gl.program_id(0)
        nprog = gl.num_programs(0)
        tile = pid
        n = gl.load(TILE_INFO + tile.to(gl.int64) * 8 + 1, mask=tile < grid, other=0)
        i = 0
        while n > 0:
            s = i % STAGES
            ph = (i // STAGES) & 1
            info = TILE_INFO + tile.to(gl.int64) * 8
            blk = gl.load(info + 2)
            grp = gl.load(info + 3)
            page = gl.load(info + 4)
            seq_len = gl.load(info + 7)
            mbarrier.wait(empty.index(s), ph ^ 1)
            rdy = ready.index(s)
            # every entry slot is copied (past n: entry 0's rows, never stored) - the expected byte
            # count of a barrier phase is a constant
            mbarrier.expect(rdy, MQ * q_desc.block_type.nbytes + k_desc.block_type.nbytes + v_desc.block_type.nbytes)
            tma.async_copy_global_to_shared(k_desc, [page * BLOCK, grp * D], rdy, k_bufs.index(s))
            tma.async_copy_global_to_shared(v_desc, [page * BLOCK, grp * D], rdy, v_bufs.index(s))
            qb = q_bufs.index(s)
            for j in gl.static_range(MQ):
                e = gl.load(TILE_E + tile.to(gl.int64) * MQ + j)
                t = row_lo + e // (NG * TOPK)
                tma.async_copy_global_to_shared(q_desc, [t * HQ + grp * G, 0], rdy, qb.slice(j * G, G))
            if blk * BLOCK + BLOCK > seq_len:  # the request's last block: V rows past its keys to 0
                mbarrier.wait(rdy, ph)
                _zero_rows_past(v_bufs.index(s), seq_len - blk * BLOCK, BLOCK, D, 8)
                fence_async_shared()
            mbarrier.arrive(vready.index(s), count=1)
            i += 1
            tile += nprog
            n = gl.load(TILE_INFO + tile.to(gl.int64) * 8 + 1, mask=tile < grid, other=0)

    @gluon.jit
    def _ws_consumer(WG: gl.constexpr, o_desc, TILE_E, TILE_INFO, LSE_PART, grid, row_lo, qk_scale, q_bufs, k_bufs,
                     v_bufs, ready, vready, empty, G: gl.constexpr, NG: gl.constexpr, TOPK: gl.constexpr,
                     MQ: gl.constexpr, D: gl.constexpr, BLOCK: gl.constexpr, STAGES: gl.constexpr):
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
        pid = gl.program_id(0)
        nprog = gl.num_programs(0)
        tile = pid
        n = gl.load(TILE_INFO + tile.to(gl.int64) * 8 + 1, mask=tile < grid, other=0)
        i = 0
        while n > 0:
            s = i % STAGES
            ph = (i // STAGES) & 1
            info = TILE_INFO + tile.to(gl.int64) * 8
            blk = gl.load(info + 2)
            q_start = gl.load(info + 5)
            q_len = gl.load(info + 6)
            seq_len = gl.load(info + 7)
            p_e = TILE_E + tile.to(gl.int64) * MQ + WG * EPW
            e = gl.load(p_e + o_r // G)  # [ROWS] entry of each row
            m_r = WG * EPW + o_r // G < n
            pos = seq_len - q_len + (row_lo + e // (NG * TOPK) - q_start)
            qh = q_bufs.index(s).slice(WG * ROWS, ROWS)
            kb = k_bufs.index(s)
            vb = v_bufs.index(s)
            mbarrier.wait(ready.index(s), ph)
            b_s = warpgroup_mma(qh, kb.permute((1, 0)), gl.zeros([ROWS, BLOCK], gl.float32, s_mma), use_acc=False,
                                is_async=True)
            b_s = warpgroup_mma_wait(num_outstanding=0, deps=[b_s])
            vis = (blk * BLOCK + o_j)[None, :] <= pos[:, None]
            b_s = gl.where(vis, b_s * qk_scale, float("-inf"))
            b_m = gl.where(m_r, gl.max(b_s, axis=1), 0.0)  # finite for real rows: key blk * BLOCK <= pos
            b_p = gl.exp2(b_s - b_m[:, None])
            b_l = gl.where(m_r, gl.sum(b_p, axis=1), 1.0)
            p_a = gl.convert_layout(b_p.to(dtype), p_op)
            mbarrier.wait(vready.index(s), ph)
            b_o = warpgroup_mma(p_a, vb, gl.zeros([ROWS, D], gl.float32, o_mma), use_acc=False, is_async=True)
            b_o = warpgroup_mma_wait(num_outstanding=0, deps=[b_o])
            l_o = gl.convert_layout(b_l, orow_l)
            # O over the consumer's half of the Q buffer (its rows are read), one TMA store an
            # entry; the stage is free once they have read it. (Stores straight from the MMA
            # registers, 4-byte pieces, freeing the stage at once: 1.6x slower, NOTES.md v25d.)
            qh.store((b_o / l_o[:, None]).to(dtype))
            fence_async_shared()
            for j in gl.static_range(EPW):
                if WG * EPW + j < n:
                    tma.async_copy_shared_to_global(o_desc, [gl.load(p_e + j) * G, 0], qh.slice(j * G, G))
            gl.store(LSE_PART + (e.to(gl.int64) * G + o_r % G), b_m + gl.log2(b_l), mask=m_r)
            tma.store_wait(0)
            mbarrier.arrive(empty.index(s), count=1)
            i += 1
            tile += nprog
            n = gl.load(TILE_INFO + tile.to(gl.int64) * 8 + 1, mask=tile < grid, other=0)

    @gluon.jit
    def _kv_outer_ws_kernel(q_desc, k_desc, v_desc, o_desc, TILE_E, TILE_INFO, LSE_PART, grid, row_lo, qk_scale,
                            HQ: gl.constexpr, G: gl.constexpr, NG: gl.constexpr, TOPK: gl.constexpr, MQ: gl.constexpr,
                            D: gl.constexpr, BLOCK: gl.constexpr, STAGES: gl.constexpr,
                            CONSUMER_REGS: gl.constexpr, PRODUCER_REGS: gl.constexpr):
        dtype: gl.constexpr = q_desc.dtype
        q_bufs = gl.allocate_shared_memory(dtype, [STAGES, MQ * G, D], q_desc.layout)
        k_bufs = gl.allocate_shared_memory(dtype, [STAGES, BLOCK, D], k_desc.layout)
        v_bufs = gl.allocate_shared_memory(dtype, [STAGES, BLOCK, D], v_desc.layout)
        ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        vready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        for s in gl.static_range(STAGES):
            mbarrier.init(ready.index(s), count=1)
            mbarrier.init(vready.index(s), count=1)
            mbarrier.init(empty.index(s), count=2)  # both consumers
        # (the argument tuples are written out: a tuple built in a variable first turns its
        # constexprs into tensors)
        gl.warp_specialize([
            (_ws_consumer, (0, o_desc, TILE_E, TILE_INFO, LSE_PART, grid, row_lo, qk_scale, q_bufs, k_bufs, v_bufs,
                            ready, vready, empty, G, NG, TOPK, MQ, D, BLOCK, STAGES)),
            (_ws_consumer, (1, o_desc, TILE_E, TILE_INFO, LSE_PART, grid, row_lo, qk_scale, q_bufs, k_bufs, v_bufs,
                            ready, vready, empty, G, NG, TOPK, MQ, D, BLOCK, STAGES)),
            (_ws_producer, (q_desc, k_desc, v_desc, TILE_E, TILE_INFO, grid, row_lo, q_bufs, k_bufs, v_bufs, ready,
                            vready, empty, HQ, G, NG, TOPK, MQ, D, BLOCK, STAGES)),
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


def launch_kv_outer_ws(q, k_cache, v_cache, tiles, o_part, lse_part, scale, topk, mq, num_programs):
    """The partial outputs of one pass's tiles (``tiles``: metadata.BlockTiles) into ``o_part``
    [rows, D] / ``lse_part`` [rows] (row = entry x G + head), as ``_kv_outer_partial_kernel``
    writes them. ``num_programs``: persistent programs (one an SM)."""
    total_q, hq, d = q.shape
    num_pages, block, hkv, _ = k_cache.shape
    g = hq // hkv
    gdt = _gl_dtype(q.dtype)
    lay = gl.NVMMASharedLayout.get_default_for([block, d], gdt)
    q_desc = TensorDescriptor.from_tensor(q.view(total_q * hq, d), [g, d], lay)
    k_desc = TensorDescriptor.from_tensor(k_cache.view(num_pages * block, hkv * d), [block, d], lay)
    v_desc = TensorDescriptor.from_tensor(v_cache.view(num_pages * block, hkv * d), [block, d], lay)
    o_desc = TensorDescriptor.from_tensor(o_part, [g, d], lay)
    _kv_outer_ws_kernel[(max(1, min(num_programs, tiles.grid)),)](
        q_desc, k_desc, v_desc, o_desc, tiles.tile_entries, tiles.tile_info, lse_part, tiles.grid, tiles.row_lo,
        scale, HQ=hq, G=g, NG=tiles.ng, TOPK=topk, MQ=mq, D=d, BLOCK=block, STAGES=_STAGES,
        CONSUMER_REGS=_CONSUMER_REGS, PRODUCER_REGS=_PRODUCER_REGS, num_warps=4, maxnreg=_MAXNREG)
