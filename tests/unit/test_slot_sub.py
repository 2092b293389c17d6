"""The split form's slot kernel in both of its forms: the whole block as one tile and the block
walked in sub-blocks with an online softmax (main_branch._SLOT_SUB), through the plain API and
through the decode wrapper (the kernel that also merges the index lists), against the float64
reference. The lengths put each request's last (local) block partly past its query, so some
sub-blocks are partly and some wholly masked."""

import pytest
import torch

from harness import bench as hb
from harness.impls import KERNEL_DEVICE, on_cpu
from harness.tolerance import lse_error, output_error
from msa_sgl import MSADecodeWrapper, reference
from msa_sgl import decode as msa_decode
from msa_sgl.ops import index_branch as ib
from msa_sgl.ops import main_branch as mb

SHAPES = dict(num_q_heads=4, num_kv_heads=2, head_dim=32, index_dim=16, topk=4, num_local_blocks=1)
# block 64, sub-blocks of 16: the last query of a request sees keys 0..pos of its block, so
# blocks ending at pos % 64 in 3 (first sub-block partial, three masked), 20 (second partial),
# 63 (full)
LENS = [64 * 5 + 4, 64 * 3 + 21, 64 * 6]


def _problem(block_size, q_lens, dtype=torch.float16, **shapes):
    return hb.make_big_problem(q_lens, LENS, dtype=dtype, device=KERNEL_DEVICE, seed=11, block_size=block_size,
                               **{**SHAPES, **shapes})


F16, F32 = torch.float16, torch.float32
G16 = dict(num_q_heads=32, num_kv_heads=2, head_dim=64)  # 16 heads a group, head_dim 64


@pytest.mark.parametrize("block_size,sub,dtype,shapes", [
    (64, 0, F16, {}), (64, 16, F16, {}), (64, 32, F16, {}), (64, 64, F16, {}), (32, 16, F16, {}),
    (128, 64, F16, {}), (128, 0, F16, {}), (16, 16, F16, {}), (64, 32, F32, {}), (64, 0, F32, {}),
    (64, 32, F16, G16), (128, 64, F16, G16)],
    ids=["b64_whole", "b64_sub16", "b64_sub32", "b64_sub64", "b32_sub16", "b128_sub64", "b128_whole", "b16_sub16",
         "fp32_b64_sub32", "fp32_b64_whole", "g16_d64_b64_sub32", "g16_d64_b128_sub64"])
def test_split_form_matches_reference(monkeypatch, block_size, sub, dtype, shapes):
    monkeypatch.setattr(mb, "_SLOT_SUB", sub)
    prob = _problem(block_size, [2, 1, 3], dtype, **shapes)
    # a selection with every block of the request's range reachable: the reference's own
    topk = reference.index_topk(**on_cpu(prob.index_args())).to(KERNEL_DEVICE)
    args = prob.attention_args(topk)
    out, lse = mb.sparse_attention(**args, method="split", return_lse=True)
    ref, ref_lse = reference.sparse_attention(**on_cpu(args), return_lse=True)
    output_error(out, ref, dtype)
    lse_error(lse, ref_lse, dtype)


@pytest.mark.parametrize("sub,heads", [(0, False), (16, False), (0, True)], ids=["whole", "sub16", "whole_heads_first"])
def test_wrapper_slot_kernel_with_list_merge(monkeypatch, sub, heads):
    monkeypatch.setattr(mb, "_SLOT_SUB", sub)
    monkeypatch.setattr(mb, "SPLIT_MAX_QUERIES", 16)  # the split form,
    monkeypatch.setattr(msa_decode, "FUSED_SELECT", True)  # its slot kernel merging the index lists
    if heads:  # many short splits, chunks of 2 lists: rows take the heads-first merge
        monkeypatch.setattr(ib, "_HEADS_MERGE", True)
        monkeypatch.setattr(ib, "_FORCE_N_SPLIT", 8)
        monkeypatch.setattr(ib, "_CHUNK_CANDIDATES", 2 * 4)  # 2 lists of kf 4 (topk 4, one local block: 3 free)
        monkeypatch.setattr(ib, "_SPLIT_FLOOR", 1)
    prob = _problem(64, [1, 1, 1])
    a = prob.args
    w = MSADecodeWrapper(prob.config, num_q_heads=4, num_kv_heads=2, head_dim=32, index_dim=16, max_batch=3,
                         max_pages=a["page_table"].shape[1], max_q_len=1, dtype=torch.float16, device=KERNEL_DEVICE)
    w.plan(a["page_table"], a["cu_seqlens_q"], a["seq_lens_k"], total_q=3)
    assert w.step_plan.method == "split" and w.step_plan.fused_select
    assert w.step_plan.index.heads_merge() == heads
    out, lse = w.run(a["q"], a["k_cache"], a["v_cache"], a["q_idx"], a["k_idx_cache"], return_lse=True)
    topk = w.topk_idx.clone()
    assert torch.equal(topk.cpu(), reference.index_topk(**on_cpu(prob.index_args())))
    ref, ref_lse = reference.sparse_attention(**on_cpu(prob.attention_args(topk)), return_lse=True)
    output_error(out, ref, torch.float16)
    lse_error(lse, ref_lse, torch.float16)


def test_sub_block_rule(monkeypatch):
    monkeypatch.setattr(mb, "_SLOT_SUB", None)
    cpu = torch.device("cpu")  # the interpreter counts 4 SMs
    assert mb.slot_sub(1, 1, 4, 128, cpu) == 0  # 4 programs: one an SM, the whole block
    assert mb.slot_sub(1, 1, 8, 128, cpu) == mb._SLOT_SUB_KEYS  # 8 programs on 4 SMs: sub-blocks
    assert mb.slot_sub(2, 4, 16, 32, cpu) == 32  # never more than the block
    monkeypatch.setattr(mb, "_SLOT_SUB", 24)  # not a tile size tl.dot / tl.arange take
    with pytest.raises(ValueError, match="_SLOT_SUB"):
        mb.slot_sub(1, 1, 4, 128, cpu)
