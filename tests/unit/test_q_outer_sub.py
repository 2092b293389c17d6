"""The query-outer main-branch form in both of its forms: the top-k blocks walked as one
pipelined loop of sub-blocks with masked loads (main_branch._Q_OUTER_SUB > 0, the default) and
whole blocks behind a branch per slot (0), against the float64 reference. The selections hold
every case the masked loop must get right without a branch: empty slots (-1), ids past the
query's own block, an id listed twice, a row whose every slot is empty or out of range (it
attends nothing: 0 and -inf), a first slot that attends nothing before real ones, and the own
block partly past the query (sub-blocks partly and wholly masked)."""

import pytest
import torch

from harness import bench as hb
from harness.impls import KERNEL_DEVICE, on_cpu
from harness.tolerance import lse_error, output_error
from msa_sgl import reference
from msa_sgl.ops import main_branch as mb

SHAPES = dict(num_q_heads=4, num_kv_heads=2, head_dim=32, index_dim=16, topk=4, num_local_blocks=1)
G16 = dict(num_q_heads=32, num_kv_heads=2, head_dim=64)  # 16 heads a group, head_dim 64
# the last query of each request ends its own block at pos % 64 = 3, 20 and 63 (block 64)
LENS = [64 * 5 + 4, 64 * 3 + 21, 64 * 6]
F16, F32, BF16 = torch.float16, torch.float32, torch.bfloat16


def _selection(prob, config):
    """The reference's selection with the edge cases written over some rows (see the module
    docstring). int32 [total_q, Hkv, topk]."""
    topk = reference.index_topk(**on_cpu(prob.index_args())).clone()
    _, pos = reference.query_positions(prob.args["cu_seqlens_q"], prob.args["seq_lens_k"])
    own = (pos // config.block_size).to(torch.int32)  # [total_q]
    k = topk.shape[2]
    topk[0, 0, 0] = -1  # an empty first slot before real ones
    topk[0, 1, k - 1] = own[0] + 1  # past the own block: attends nothing
    topk[1, 0, :] = -1  # every slot empty: the row attends nothing
    topk[1, 1, 0] = own[1] + 3  # past the own block, first
    topk[1, 1, 1:] = -1  # and nothing else: the row attends nothing
    topk[2, 0, 1] = topk[2, 0, 0]  # an id listed twice counts twice
    topk[-1, 1, :] = own[-1]  # the own block four times (its keys past the query masked each time)
    return topk.to(KERNEL_DEVICE)


@pytest.mark.parametrize("block_size,sub,dtype,shapes", [
    (64, 64, F16, {}), (64, 16, F16, {}), (64, 32, F16, {}), (64, 0, F16, {}), (128, 64, F16, {}),
    (16, 64, F16, {}), (32, 16, F16, {}), (64, 32, F32, {}), (64, 0, F32, {}), (128, 64, F16, G16),
    (128, 64, BF16, G16)],
    ids=["b64_sub64", "b64_sub16", "b64_sub32", "b64_whole", "b128_sub64", "b16_sub64_is_block", "b32_sub16",
         "fp32_b64_sub32", "fp32_b64_whole", "g16_d64_b128_sub64", "bf16_g16_d64_b128_sub64"])
def test_q_outer_matches_reference(monkeypatch, block_size, sub, dtype, shapes):
    if dtype == BF16 and KERNEL_DEVICE.type != "cuda":
        pytest.skip("the Triton interpreter's tl.dot is wrong on bfloat16: bf16 runs on the GPU")
    monkeypatch.setattr(mb, "_Q_OUTER_SUB", sub)
    prob = hb.make_big_problem([3, 1, 2], LENS, dtype=dtype, device=KERNEL_DEVICE, seed=5, block_size=block_size,
                               **{**SHAPES, **shapes})
    topk = _selection(prob, prob.config)
    args = prob.attention_args(topk)
    out, lse = mb.sparse_attention(**args, method="q_outer", return_lse=True)
    ref, ref_lse = reference.sparse_attention(**on_cpu(args), return_lse=True)
    output_error(out, ref, dtype)
    lse_error(lse, ref_lse, dtype)
    # query 1 attends nothing in either group: exactly 0 and -inf, never NaN
    assert torch.equal(out[1].cpu(), torch.zeros_like(out[1].cpu()))
    assert bool(torch.isneginf(lse[1].cpu()).all()), f"lse of a query that attends nothing: {lse[1]}"


def test_q_outer_launch_rule(monkeypatch):
    cpu = torch.device("cpu")  # the interpreter counts 4 SMs: deep stages up to 3 x 4 = 12 programs
    assert mb.q_outer_launch(6, 2, 128, cpu) == (mb._Q_OUTER_SUB, mb._Q_OUTER_STAGES_DEEP)  # 12 programs
    assert mb.q_outer_launch(7, 2, 128, cpu) == (mb._Q_OUTER_SUB, mb._Q_OUTER_STAGES)  # 14: more than a wave
    assert mb.q_outer_launch(1, 1, 16, cpu)[0] == min(16, mb._Q_OUTER_SUB)  # never more than the block
    monkeypatch.setattr(mb, "_Q_OUTER_SUB", 0)  # whole blocks: Triton's default stages
    assert mb.q_outer_launch(1, 1, 128, cpu) == (0, None)
    monkeypatch.setattr(mb, "_Q_OUTER_SUB", 24)  # not a tile size tl.dot / tl.arange take
    with pytest.raises(ValueError, match="_Q_OUTER_SUB"):
        mb.q_outer_launch(1, 1, 128, cpu)
