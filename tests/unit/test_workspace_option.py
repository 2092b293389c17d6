"""The public ``workspace_bytes`` option of msa_sgl.sparse_attention / msa_attention (the
KV-outer form's partial-output budget): bad values raise ValueError naming it; a budget of one
tile of rows runs the call in several row ranges (counted at the tile-building step), with the
result as the default single range (up to an fp16 ulp) and the float64 reference."""

import pytest
import torch

import msa_sgl
from harness import bench as hb
from harness.impls import KERNEL_DEVICE, on_cpu
from harness.tolerance import output_error
from msa_sgl import reference
from msa_sgl.ops import main_branch as mb

SHAPES = dict(num_q_heads=8, num_kv_heads=2, head_dim=32, index_dim=16, block_size=16, topk=4, num_local_blocks=1)


def _problem():
    return hb.make_big_problem([40, 25], [120, 90], dtype=torch.float16, device=KERNEL_DEVICE, seed=5, **SHAPES)


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "1"], ids=["zero", "negative", "bool", "float", "str"])
@pytest.mark.parametrize("fn", ["sparse_attention", "msa_attention"])
def test_bad_workspace_bytes_raise(fn, bad):
    prob = _problem()
    args = prob.attention_args(msa_sgl.index_topk(**prob.index_args())) if fn == "sparse_attention" else prob.msa_args()
    with pytest.raises(ValueError, match="workspace_bytes"):
        getattr(msa_sgl, fn)(**args, workspace_bytes=bad)


@pytest.mark.parametrize("fn", ["sparse_attention", "msa_attention"])
def test_small_workspace_runs_in_row_ranges_with_the_same_result(fn, monkeypatch):
    prob = _problem()
    args = prob.attention_args(msa_sgl.index_topk(**prob.index_args())) if fn == "sparse_attention" else prob.msa_args()
    monkeypatch.setattr(mb, "KV_OUTER_MIN_QUERIES", 0)  # the KV-outer form for this small call
    calls = []
    real = mb.build_block_tiles
    monkeypatch.setattr(mb, "build_block_tiles", lambda *a, **k: calls.append(a[4:6]) or real(*a, **k))
    out_default = getattr(msa_sgl, fn)(**args)
    n_default = len(calls)
    out_small = getattr(msa_sgl, fn)(**args, workspace_bytes=1)
    ranges = calls[n_default:]
    assert n_default == 1, f"default workspace: expected one row range, got {calls}"
    # one tile of rows per range: 128 // 4 (G = 4) = 32 query rows, so 65 rows take 3 ranges
    assert ranges == [(0, 32), (32, 64), (64, 65)], ranges
    # the same per-row arithmetic; only the tiles' row packing differs (the interpreter's matmul
    # may sum a row in another order: one fp16 ulp)
    torch.testing.assert_close(out_small, out_default, rtol=2e-3, atol=1e-4)
    topk = msa_sgl.index_topk(**prob.index_args())
    ref = reference.sparse_attention(**on_cpu(prob.attention_args(topk)))
    output_error(out_small, ref, torch.float16)
