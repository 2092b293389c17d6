"""The KV-outer partial kernel in both of its forms: the whole block as one tile and the block
walked in pipelined sub-blocks with an online softmax (main_branch._KV_SUB), against the float64
reference, and the shapes-only rule that picks between them. The lengths put each request's own
block partly past its queries, so sub-blocks are partly and wholly masked for some rows of a tile,
and tiles hold padding rows (fewer queries than a tile's)."""

import pytest
import torch

from harness import bench as hb
from harness.impls import KERNEL_DEVICE, on_cpu
from harness.tolerance import lse_error, output_error
from msa_sgl import reference
from msa_sgl.ops import main_branch as mb

SHAPES = dict(num_q_heads=8, num_kv_heads=2, head_dim=32, index_dim=16, topk=4, num_local_blocks=1)
F16, F32 = torch.float16, torch.float32
G16 = dict(num_q_heads=32, num_kv_heads=2, head_dim=64)  # 16 heads a group: one query a 16-row tile


@pytest.mark.parametrize("block_size,sub,dtype,shapes", [
    (64, 0, F16, {}), (64, 16, F16, {}), (64, 32, F16, {}), (32, 16, F16, {}), (128, 32, F16, {}),
    (64, 32, F32, {}), (64, 16, F16, G16)],
    ids=["b64_whole", "b64_sub16", "b64_sub32", "b32_sub16", "b128_sub32", "fp32_b64_sub32", "g16_d64_b64_sub16"])
def test_kv_outer_matches_reference(monkeypatch, block_size, sub, dtype, shapes):
    monkeypatch.setattr(mb, "_KV_SUB", sub)
    # queries at the end of 5 / 3 / 6 blocks: the own block ends 4, 21 and 63 keys into it
    lens = [block_size * 4 + 5, block_size * 2 + 22, block_size * 6]
    prob = hb.make_big_problem([20, 9, 30], lens, dtype=dtype, device=KERNEL_DEVICE, seed=13, block_size=block_size,
                               **{**SHAPES, **shapes})
    topk = reference.index_topk(**on_cpu(prob.index_args())).to(KERNEL_DEVICE)
    args = prob.attention_args(topk)
    out, lse = mb.sparse_attention(**args, method="kv_outer", return_lse=True)
    assert torch.isfinite(out).all() and not torch.isnan(lse).any()
    ref, ref_lse = reference.sparse_attention(**on_cpu(args), return_lse=True)
    output_error(out, ref, dtype)
    lse_error(lse, ref_lse, dtype)


@pytest.mark.parametrize("total_q,max_pages,block_size,want", [
    (16384, 128, 128, 0), (16384, 256, 128, 32), (16384, 8192, 128, 32), (16384, 255, 128, 0),
    (100, 4, 64, 32), (100, 4, 32, 0), (100, 8, 16, 0)],
    ids=["p0", "p16k", "p1m", "just_below", "b64", "b32_whole", "b16_whole"])
def test_sub_rule(total_q, max_pages, block_size, want):
    assert mb.kv_outer_sub(total_q, max_pages, block_size) == want


def test_bad_sub_knob_raises(monkeypatch):
    monkeypatch.setattr(mb, "_KV_SUB", 48)
    with pytest.raises(ValueError, match="_KV_SUB"):
        mb.kv_outer_sub(100, 4, 64)
