"""The warp-specialized Gluon KV-outer partial kernel (ops.kv_outer_ws) on the GPU: against the
float64 reference, against the Triton partial kernel, with row-range and group passes, and run to
run. Gluon has no interpreter, so these tests need a Hopper GPU (they skip elsewhere; the
Triton kernel's CPU tests keep covering the KV-outer form's metadata and merge).

The cache is poisoned with NaN past every request's last key (in its last page) and in the pages
nobody owns: the producer zeroes V rows past a request's keys, and any read of a poisoned K/V row
into a real output shows as NaN."""

import pytest
import torch

from harness import bench as hb
from harness.impls import on_cpu
from harness.tolerance import lse_error, output_error
from msa_sgl import ops, reference
from msa_sgl.ops import kv_outer_ws
from msa_sgl.ops import main_branch as mb

_HOPPER = torch.cuda.is_available() and torch.cuda.get_device_capability()[0] == 9
pytestmark = pytest.mark.skipif(not (_HOPPER and kv_outer_ws.HAVE_GLUON),
                                reason="Gluon kernel: needs a Hopper GPU (no interpreter for Gluon)")


def _problem(dtype, q_lens, seq_lens, seed):
    prob = hb.make_big_problem(q_lens, seq_lens, dtype=dtype, seed=seed, spare_pages=2)
    a = prob.args
    B = prob.config.block_size
    owned = torch.zeros(a["k_cache"].shape[0], dtype=torch.bool)
    for b, s in enumerate(seq_lens):
        pages = a["page_table"][b, :(s + B - 1) // B].cpu().long()
        owned[pages] = True
        if s % B:  # slots past the last key of the request's last page
            last = int(pages[-1])
            a["k_cache"][last, s % B:] = float("nan")
            a["v_cache"][last, s % B:] = float("nan")
    a["k_cache"][~owned.to(a["k_cache"].device)] = float("nan")
    a["v_cache"][~owned.to(a["v_cache"].device)] = float("nan")
    return prob


def _run(monkeypatch, args, ws, **kw):
    monkeypatch.setattr(mb, "_KV_WS", ws)
    return mb.sparse_attention(**args, method="kv_outer", return_lse=True, **kw)


# three requests: own blocks ending 37, 5 and 128 keys in; contexts from one block past topk to
# 32 blocks, so rows with every block selected (p < topk) and sparse rows both occur
CASES = {"varlen": ([300, 200, 420], [2085, 2053, 4096])}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_ws_matches_reference_and_triton(monkeypatch, dtype):
    q_lens, seq_lens = CASES["varlen"]
    prob = _problem(dtype, q_lens, seq_lens, seed=5)
    topk = ops.index_topk(**prob.index_args())
    args = prob.attention_args(topk)
    assert kv_outer_ws.ws_supported(args["q"], args["k_cache"], args["v_cache"], 16, 128, 8)
    out, lse = _run(monkeypatch, args, True)
    ref, ref_lse = reference.sparse_attention(**on_cpu(args), return_lse=True)
    output_error(out, ref, dtype)
    lse_error(lse, ref_lse, dtype)
    tri, tri_lse = _run(monkeypatch, args, False)
    assert torch.isfinite(tri).all()
    # the same tiles and merge; the partials differ only in rounding
    rel = float((out.double() - tri.double()).norm() / tri.double().norm())
    assert rel < 4e-3, f"rel L2 against the Triton kernel {rel:.2e}"
    assert float((lse - tri_lse).abs().max()) < 1e-2


def test_ws_passes_and_runs_bitwise(monkeypatch):
    """Row-range and group passes (a small workspace) give the one-pass output bit for bit, and
    three runs of one call agree bit for bit (no atomics; every entry's partial is one tile's)."""
    q_lens, seq_lens = CASES["varlen"]
    prob = _problem(torch.bfloat16, q_lens, seq_lens, seed=9)
    topk = ops.index_topk(**prob.index_args())
    args = prob.attention_args(topk)
    one, one_lse = _run(monkeypatch, args, True, workspace_bytes=8 << 30)
    for ws_bytes in (64 << 20, 8 << 20):  # two groups a pass / row ranges of one group
        out, lse = _run(monkeypatch, args, True, workspace_bytes=ws_bytes)
        assert torch.equal(out, one) and torch.equal(lse, one_lse), f"workspace {ws_bytes}"
    for _ in range(2):
        out, lse = _run(monkeypatch, args, True, workspace_bytes=8 << 30)
        assert torch.equal(out, one) and torch.equal(lse, one_lse)


def test_ws_not_taken_for_unsupported_shapes(monkeypatch):
    """G 8 or D 64: ws_supported says no and the Triton kernel runs (same result as with the
    knob off)."""
    prob = hb.make_big_problem([64], [1000], dtype=torch.bfloat16, seed=3, num_q_heads=32, head_dim=64)
    topk = ops.index_topk(**prob.index_args())
    args = prob.attention_args(topk)
    assert not kv_outer_ws.ws_supported(args["q"], args["k_cache"], args["v_cache"], 8, 128, 16)
    on, _ = _run(monkeypatch, args, True)
    off, _ = _run(monkeypatch, args, False)
    assert torch.equal(on, off)
