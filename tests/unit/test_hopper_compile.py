"""The decode chain's kernels compile for Hopper (sm_90) on a machine without a GPU, with and
without programmatic dependent launch, and carry the griddepcontrol instructions their PDL mode
asks for: one wait when on, one launch_dependents only in mode 1 (tests/unit/_hopper_compile.py
in a process without TRITON_INTERPRET). Catches front-end errors before a GPU run; the GPU has
Triton 3.6, this check the Triton installed here. And the decode index scan's loop keeps a key
block in flight with the decode num_stages, where Triton's default keeps none (Triton 3.6 and 3.8
alike; benchmarks/NOTES.md v9); and its keys-x-queries form (the 8-bit decode tiles') runs 8-bit
warpgroup MMAs, where queries x keys runs 16-bit mma.sync on converted keys (NOTES.md v13b, v14); and
the split form's slot kernel in sub-blocks loads K and V with cp.async (NOTES.md v16), as do the query-outer
form's loop of sub-blocks (v30) and the dense
rows' kernel in both its key loops (v19); and the block tiles' kernels compile with one entry
(E == 1, which the JIT passes as a constexpr); and the warp-specialized Gluon KV-outer kernel
compiles with its TMA copies, warpgroup MMAs and partition registers, and ptxas keeps its
pipelining (v25, v26; Gluon has no interpreter, so this is its only check on a machine without a
Hopper GPU); and benchmarks/ws_timeline.py's instrumented copy of it still builds and compiles;
and so does the Gluon prefill index scan (v27b, v27d), whose schedule keeps the first product's
row maxima between its two MMA waits."""

import json
import os
import subprocess
import sys

import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
KERNELS = ("_index_partial_kernel", "_index_finalize_kernel", "_slot_partial_kernel", "_slot_partial_kernel_select",
           "_slot_partial_kernel_select_heads", "_merge_heads_kernel", "_sparse_attn_fwd_kernel")


@pytest.fixture(scope="module")
def compiled():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    res = subprocess.run([sys.executable, os.path.join(HERE, "_hopper_compile.py")], env=env, capture_output=True,
                         text=True, timeout=600, cwd=os.path.dirname(os.path.dirname(HERE)))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    rows = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    return {(r["kernel"], r.get("mode", r.get("dtype")), r.get("num_stages", r.get("keys_m"))): r for r in rows}


@pytest.mark.skipif(torch.cuda.is_available(), reason="the GPU runs the kernels themselves")
@pytest.mark.parametrize("mode", [0, 1, 2], ids=["no_pdl", "pdl_early", "pdl_at_exit"])
@pytest.mark.parametrize("kernel", KERNELS)
def test_decode_kernels_compile_for_sm90(compiled, kernel, mode):
    r = compiled[(kernel, mode, None)]
    assert r["wait"] == (1 if mode else 0), r
    assert r["launch"] == (1 if mode == 1 else 0), r


@pytest.mark.skipif(torch.cuda.is_available(), reason="the GPU runs the kernels themselves")
@pytest.mark.parametrize("dtype", ["bf16", "fp8e4nv"])
def test_decode_index_scan_keeps_a_key_block_in_flight(compiled, dtype):
    from msa_sgl.ops.index_branch import _SHORT_TILE_STAGES

    assert compiled[("index_partial_key_buffers", dtype, 3)]["buffers"] == 1  # Triton's default: none ahead
    assert compiled[("index_partial_key_buffers", dtype, _SHORT_TILE_STAGES)]["buffers"] >= 2
    if dtype == "fp8e4nv":  # keys x queries (Triton 3.6 / 3.8: 2 buffers at 3 stages, 3 at 6)
        assert compiled[("index_partial_key_buffers_keys_m", dtype, _SHORT_TILE_STAGES)]["buffers"] >= 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="the GPU runs the kernels themselves")
def test_decode_index_scan_keys_x_queries_takes_fp8_warpgroup_mma(compiled):
    r = compiled[("index_partial_mma", "fp8e4nv", 1)]
    assert r["wgmma"] == ["wgmma.mma_async.sync.aligned.m64n16k32.f32.e4m3.e4m3"] and r["mma_sync"] == 0, r


@pytest.mark.skipif(torch.cuda.is_available(), reason="the GPU runs the kernels themselves")
def test_slot_kernel_sub_blocks_load_asynchronously(compiled):
    # the whole block loads through registers; sub-blocks of 64 keys in a pipelined loop, whose
    # K and V go to shared memory by cp.async (main_branch._SLOT_SUB, benchmarks/NOTES.md v16)
    assert compiled[("slot_sub_cp_async", 0, None)]["cp_async"] == 0
    assert compiled[("slot_sub_cp_async", 64, None)]["cp_async"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="the GPU runs the kernels themselves")
def test_q_outer_sub_blocks_load_by_cp_async(compiled):
    # whole blocks behind a branch per slot: plain loads, each block waits for its K, then its V;
    # the branch-free loop of sub-blocks: Triton pipelines K and V through shared memory
    assert compiled[("q_outer_cp_async", 0, None)]["cp_async"] == 0
    assert compiled[("q_outer_cp_async", 64, None)]["cp_async"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="the GPU runs the kernels themselves")
def test_dense_rows_kernel_pipelines_its_key_loops(compiled):
    # both key loops (unmasked, diagonal) load K and V by cp.async; the only 16-byte synchronous
    # loads left are the query tile's (rows x D bf16 over the program's threads)
    from msa_sgl.ops import main_branch as mb

    q_loads = mb._DENSE_TILE_ROWS * 128 * 2 // 16 // (32 * mb._DENSE_WARPS)
    for batch_p in (0, 32, 1024):  # without / with the tile map
        r = compiled[("dense_rows", batch_p, None)]
        assert r["cp_async"] > 0 and r["ld_global_v4"] == q_loads, r


@pytest.mark.skipif(torch.cuda.is_available(), reason="the GPU runs the kernels themselves")
@pytest.mark.parametrize("kernel", ["_tile_runs_kernel", "_tile_bounds_kernel"])
def test_tile_kernels_compile_with_one_entry(compiled, kernel):
    # the JIT passes an int argument equal to 1 as a constexpr: E == 1 (one row, one group,
    # topk 1) must compile as any other E does
    assert compiled[(kernel, "E", None)]["compiled"] and compiled[(kernel, "E1", None)]["compiled"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the GPU runs the kernels themselves")
@pytest.mark.parametrize("kernel", ["kv_outer_ws", "kv_outer_ws_fullmask"], ids=["diag_mask", "full_mask"])
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_kv_outer_ws_compiles_for_sm90(compiled, dtype, kernel):
    from msa_sgl.ops import kv_outer_ws as ws

    if not ws.HAVE_GLUON:
        pytest.skip("this Triton's Gluon is not the one the kernel is written for (kv_outer_ws.HAVE_GLUON)")
    r = compiled[(kernel, dtype, None)]
    # PTX copy instructions: the producer's K and V boxes [128, 128] and 8 Q boxes [16, 128], each
    # as two 128-byte-swizzled copies of 64 columns (20); the consumers' stores of their 4 entries'
    # partials, one instruction for each (its two 64-column halves issued by two lanes), in each
    # of the two consumers (8); the producer copies the first tile's K and Q before its loop too
    # (18 more)
    assert r["tma_load"] == 2 * (2 + 8) + 2 * (1 + 8), r
    assert r["tma_store"] == 2 * 4, r
    # 8 k-steps a product, in each consumer: QK^T and PV in the loop, the first QK^T before it
    assert r["wgmma"] == 2 * 8 * 3, r
    # the producer shrinks to its budget, the consumers grow to theirs
    assert ws._PRODUCER_REGS in r["setmaxnreg"] and ws._CONSUMER_REGS in r["setmaxnreg"], r
    # two stages of Q, K and V (96 KB each) and a 16 KB O buffer a consumer fit one program an SM
    # (227 KB on Hopper)
    assert 2 * 3 * 128 * 128 * 2 <= r["shared"] <= 227 * 1024, r


@pytest.mark.skipif(torch.cuda.is_available(), reason="the GPU runs the kernels themselves")
@pytest.mark.parametrize("kernel", ["kv_outer_ws", "kv_outer_ws_fullmask"], ids=["diag_mask", "full_mask"])
def test_kv_outer_ws_overlaps_softmax_with_pv(compiled, kernel):
    # what ptxas made of the pipelined consumers (benchmarks/NOTES.md v26): no warning (C7514 would
    # mean every warpgroup MMA serialized), and in each consumer's loop the wait for the next
    # tile's QK^T (depth 1: PV still in flight) followed by all 64 exp2s of a thread's softmax
    # and none after the wait for PV (depth 0) - ptxas hoisting that wait above the softmax (as
    # it did with the softmax in the wait's basic block) would run them one after the other again
    from msa_sgl.ops import kv_outer_ws as ws

    if not ws.HAVE_GLUON:
        pytest.skip("this Triton's Gluon is not the one the kernel is written for (kv_outer_ws.HAVE_GLUON)")
    r = compiled[(kernel, "bf16", None)]
    if r["waits"] is None:
        pytest.skip("no ptxas / cuobjdump beside this Triton")
    assert r["ptxas_warnings"] == [], r["ptxas_warnings"]
    assert [w[0] for w in r["waits"]].count(1) == 2, r["waits"]  # one in each consumer's loop
    for i, w in enumerate(r["waits"]):
        if w[0] == 1:
            # (the diagonal-only mask keeps a real branch: its masked and unmasked softmax, 64 each)
            assert w[1] == (128 if kernel == "kv_outer_ws" else 64) and r["waits"][i + 1] == [0, 0], r["waits"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the GPU runs the kernels themselves")
def test_ws_timeline_instruments_the_kernel(compiled):
    # benchmarks/ws_timeline.py finds every anchor in the kernel's source and its stamps compile:
    # one %clock64 read a mark in each consumer and the producer
    from msa_sgl.ops import kv_outer_ws as ws

    if not ws.HAVE_GLUON:
        pytest.skip("this Triton's Gluon is not the one the kernel is written for (kv_outer_ws.HAVE_GLUON)")
    r = compiled[("ws_timeline", "bf16", None)]
    assert "error" not in r, r["error"]
    assert r["clock64"] == r["expected"] == 2 * 8 + 4, r


@pytest.mark.skipif(torch.cuda.is_available(), reason="the GPU runs the kernels themselves")
@pytest.mark.parametrize("rows", [128, 256], ids=["rows128", "rows256"])
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_index_ws_compiles_for_sm90(compiled, dtype, rows):
    from msa_sgl.ops import index_ws as iw

    if not iw.HAVE_GLUON:
        pytest.skip("this Triton's Gluon is not the one the kernel is written for (index_ws.HAVE_GLUON)")
    r = compiled[("index_ws", dtype, rows)]
    # one TMA copy a key block in the producer's loop, as two 128-byte-swizzled copies of 64
    # columns; 2 products of 8 k-steps in each consumer's loop
    assert r["tma_load"] == 2, r
    assert r["wgmma"] == 2 * 2 * 8, r
    assert iw._PRODUCER_REGS in r["setmaxnreg"] and iw._CONSUMER_REGS in r["setmaxnreg"], r
    # the tile's Q rows (rows x 256 B) and the key ring fit one CTA an SM (227 KB on Hopper)
    assert rows * 256 + iw._STAGES * 128 * 256 <= r["shared"] <= 227 * 1024, r
    if dtype == "bf16" and r["waits"] is not None:
        # no warning (C7514: every warpgroup MMA serialized), and in each consumer's loop the wait
        # for the first product (depth 1) followed by its row maxima (a thread's two rows of 32
        # scores: >= 62 FMNMX) before the wait for the second (depth 0)
        assert r["ptxas_warnings"] == [], r["ptxas_warnings"]
        depth1 = [i for i, w in enumerate(r["waits"]) if w[0] == 1]
        assert len(depth1) == 2, r["waits"]
        for i in depth1:
            assert r["waits"][i][1] >= 62 and r["waits"][i + 1][0] == 0, r["waits"]
