"""The KV-outer form's query windows (metadata.build_block_tiles ``q_window``): every tile holds
queries of one window only, tiles come in (group, window) order, every valid (query, group, slot)
entry is in exactly one tile (tile_entries repeating the tile's run of ``order``), and the
attention output matches the one-window build and the float64 reference; the window rule at
MiniMax-M3 shapes."""

import pytest
import torch

import msa_sgl
from harness import bench as hb
from harness.impls import KERNEL_DEVICE, on_cpu
from harness.tolerance import output_error
from msa_sgl import reference
from msa_sgl.ops import main_branch as mb
from msa_sgl.ops.metadata import build_block_tiles, token_requests

SHAPES = dict(num_q_heads=8, num_kv_heads=2, head_dim=32, index_dim=16, block_size=16, topk=4, num_local_blocks=1)


def _problem():
    return hb.make_big_problem([40, 25], [120, 90], dtype=torch.float16, device=KERNEL_DEVICE, seed=7, **SHAPES)


def _tiles(prob, topk, q_window):
    a = prob.attention_args(topk)
    total_q = a["q"].shape[0]
    token_req = token_requests(a["cu_seqlens_q"], total_q)
    batch, max_pages = a["page_table"].shape
    return build_block_tiles(topk, a["cu_seqlens_q"], a["seq_lens_k"], token_req, 0, total_q, batch, max_pages,
                             a["config"].block_size, 4, a["page_table"], a["k_cache"].shape[0], q_window)


@pytest.mark.parametrize("q_window", [1, 8, 24, 64, 0], ids=["w1", "w8", "w24", "w64_whole", "off"])
def test_tiles_stay_inside_their_window(q_window):
    prob = _problem()
    topk = msa_sgl.index_topk(**prob.index_args())
    hkv, k = topk.shape[1], topk.shape[2]
    tiles = _tiles(prob, topk, q_window)
    info = tiles.tile_info.cpu()
    order = tiles.order.cpu().long()
    live = info[info[:, 1] > 0]
    assert len(live) > 0
    seen = []
    win = q_window if q_window > 0 else 10**9
    last = (-1, -1)
    entries = tiles.tile_entries.cpu().long()[info[:, 1] > 0]
    for (first, n, _blk, grp, *_), row in zip(live.tolist(), entries):
        e = order[first:first + n]
        assert torch.equal(row[:n], e) and not row[n:].any(), f"tile_entries of the tile at {first}: {row.tolist()}"
        t = e // (hkv * k)
        assert torch.all(t // win == t[0] // win), f"tile at {first} spans windows: rows {t.tolist()}"
        assert torch.all((e // k) % hkv == grp), "tile entries of another group"
        key = (grp, int(t[0]) // win)
        assert key >= last, f"tiles out of (group, window) order: {key} after {last}"
        last = key
        seen.append(e)
    seen = torch.cat(seen).sort().values
    ref_tiles = _tiles(prob, topk, 0)
    ref_info = ref_tiles.tile_info.cpu()
    ref_seen = torch.cat([ref_tiles.order.cpu().long()[f:f + n] for f, n in ref_info[ref_info[:, 1] > 0, :2].tolist()])
    assert torch.equal(seen, ref_seen.sort().values), "windowed tiles cover other entries than one window"
    assert len(seen) == len(torch.unique(seen))


@pytest.mark.parametrize("q_window", [8, 24], ids=["w8", "w24"])
def test_windowed_output_matches(q_window):
    prob = _problem()
    topk = msa_sgl.index_topk(**prob.index_args())
    args = prob.attention_args(topk)
    out_one = mb.sparse_attention(**args, method="kv_outer", q_window=0)
    out_win = mb.sparse_attention(**args, method="kv_outer", q_window=q_window)
    # same per-row arithmetic; only the rows packed beside each other differ (one fp16 ulp at most
    # under the interpreter, whose matmul may sum a row in another order)
    torch.testing.assert_close(out_win, out_one, rtol=2e-3, atol=1e-4)
    ref = reference.sparse_attention(**on_cpu(args))
    output_error(out_win, ref, torch.float16)


@pytest.mark.parametrize("ctx,want", [(16384, 2048), (32768, 2048), (65536, 0), (131072, 0), (1 << 20, 0)],
                         ids=["16K", "32K", "64K", "128K", "1M"])
def test_window_rule_at_m3_shapes(ctx, want):
    # one request, page table as wide as its context, bf16 K/V with head_dim 128, blocks of 128
    assert mb.kv_outer_q_window(1, ctx // 128, 128, 128, 2) == want
    # eight such requests: their K/V together bounds what a window re-reads
    assert mb.kv_outer_q_window(8, ctx // 128, 128, 128, 2) == (want if ctx * 8 <= 48 * 1024 else 0)

