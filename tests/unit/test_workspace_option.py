"""The public ``workspace_bytes`` option of msa_sgl.sparse_attention / msa_attention (the
KV-outer form's partial-output budget): bad values raise ValueError naming it; a small
budget splits the call into passes (counted at the tile-building step): by KV groups while one
group's rows fit (bitwise the one-pass result), by groups and row ranges below (up to an fp16
ulp); both match the float64 reference."""

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


def _passes(monkeypatch):
    """Records the (row_lo, row_hi, g_lo, ng) of every KV-outer pass (its tile build)."""
    calls = []
    real = mb.build_block_tiles
    monkeypatch.setattr(mb, "build_block_tiles", lambda *a, **k: calls.append(a[4:6] + a[13:15]) or real(*a, **k))
    return calls


@pytest.mark.parametrize("fn", ["sparse_attention", "msa_attention"])
def test_small_workspace_runs_in_passes_with_the_same_result(fn, monkeypatch):
    prob = _problem()
    args = prob.attention_args(msa_sgl.index_topk(**prob.index_args())) if fn == "sparse_attention" else prob.msa_args()
    monkeypatch.setattr(mb, "KV_OUTER_MIN_QUERIES", 0)  # the KV-outer form for this small call
    calls = _passes(monkeypatch)
    out_default = getattr(msa_sgl, fn)(**args)
    n_default = len(calls)
    out_small = getattr(msa_sgl, fn)(**args, workspace_bytes=1)
    passes = calls[n_default:]
    assert calls[:n_default] == [(0, 65, 0, 2)], f"default workspace: expected one pass, got {calls[:n_default]}"
    # not even one group's rows fit: one group at a time, in ranges of one tile of rows, 128 // 4
    # (G = 4) = 32 query rows, so 65 rows take 3 ranges
    rows = [(0, 32), (32, 64), (64, 65)]
    assert passes == [r + (g, 1) for g in (0, 1) for r in rows], passes
    # the same per-row arithmetic; only the tiles' row packing differs (the interpreter's matmul
    # may sum a row in another order: one fp16 ulp)
    torch.testing.assert_close(out_small, out_default, rtol=2e-3, atol=1e-4)
    topk = msa_sgl.index_topk(**prob.index_args())
    ref = reference.sparse_attention(**on_cpu(prob.attention_args(topk)))
    output_error(out_small, ref, torch.float16)


@pytest.mark.parametrize("groups_fit", [1, 2, 3], ids=["one_group", "two_groups", "three_groups"])
def test_workspace_of_whole_groups_runs_group_passes_bitwise(groups_fit, monkeypatch):
    """A budget that holds all rows of some groups splits the call by groups only: each group's
    tiles are the one-pass tiles, so the output is bitwise the one-pass output."""
    shapes = dict(SHAPES, num_q_heads=16, num_kv_heads=4)
    prob = hb.make_big_problem([40, 25], [120, 90], dtype=torch.float16, device=KERNEL_DEVICE, seed=6, **shapes)
    args = prob.attention_args(msa_sgl.index_topk(**prob.index_args()))
    calls = _passes(monkeypatch)
    out_one = mb.sparse_attention(**args, method="kv_outer")
    per_row_group = 4 * 4 * (32 * 2 + 4)  # G * topk * (D * 2 B + 4 B of LSE)
    out_groups = mb.sparse_attention(**args, method="kv_outer", workspace_bytes=65 * per_row_group * groups_fit)
    # 4 groups, fit at a time: as many passes as needed, groups split as evenly as that allows
    want = {1: [(0, 1), (1, 1), (2, 1), (3, 1)], 2: [(0, 2), (2, 2)], 3: [(0, 2), (2, 2)]}[groups_fit]
    assert calls == [(0, 65, 0, 4)] + [(0, 65) + gw for gw in want], calls
    assert torch.equal(out_groups, out_one)
    ref = reference.sparse_attention(**on_cpu(args))
    output_error(out_groups, ref, torch.float16)


@pytest.mark.parametrize("method", ["kv_outer", "q_outer"])
def test_strided_topk_idx_view(method):
    """topk_idx need only have unit stride over slots (the API's check): a view into a wider
    tensor gives the result of its contiguous copy (the KV-outer tile build once read it as
    contiguous)."""
    prob = _problem()
    topk = msa_sgl.index_topk(**prob.index_args())
    wide = torch.full((topk.shape[0], topk.shape[1], topk.shape[2] + 3), 7, dtype=topk.dtype, device=topk.device)
    wide[:, :, :topk.shape[2]] = topk
    view = wide[:, :, :topk.shape[2]]
    assert not view.is_contiguous()
    args = prob.attention_args(topk)
    want = mb.sparse_attention(**args, method=method)
    got = mb.sparse_attention(**dict(args, topk_idx=view), method=method)
    assert torch.equal(got, want)
    # and through the public API (its own choice of form; the same for both layouts)
    assert torch.equal(msa_sgl.sparse_attention(**dict(args, topk_idx=view)), msa_sgl.sparse_attention(**args))
