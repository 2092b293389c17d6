"""The warp-specialized Gluon prefill index scan (ops.index_ws) on the GPU: its partial lists bit for
bit the Triton partial kernel's (the same warpgroup MMAs, the same insertion rule), every list
slot compared (both runs start from the same poisoned workspace, so a list one kernel writes and
the other does not shows), the selections equal and run to run identical, across splits, tile
orders, requests of mixed lengths, GQA widths and dtypes; and the calls it must leave to the
Triton kernel. Gluon has no interpreter, so these tests need a Hopper GPU (they skip elsewhere;
tests/unit/test_hopper_compile.py compiles the kernel for sm_90 on any machine). Every test counts
the Gluon launches, so a test meant for the Gluon kernel cannot pass on the Triton one."""

import pytest
import torch

from harness import bench as hb
from harness.tolerance import check_selection_contract, compare_topk
from msa_sgl import reference
from msa_sgl.ops import index_branch as ib
from msa_sgl.ops import index_ws
from msa_sgl.ops.metadata import call_rows

_HOPPER = torch.cuda.is_available() and torch.cuda.get_device_capability()[0] == 9
pytestmark = pytest.mark.skipif(not (_HOPPER and index_ws.HAVE_GLUON),
                                reason="Gluon kernel: needs a Hopper GPU (no interpreter for Gluon)")

_POISON = 0x5A5A5A5A5A5A5A5A


@pytest.fixture
def launches(monkeypatch):
    calls = []
    real = index_ws.launch_index_ws

    def counted(*args, **kwargs):
        calls.append(kwargs["n_split"])
        return real(*args, **kwargs)

    monkeypatch.setattr(index_ws, "launch_index_ws", counted)
    return calls


def _lists(prob, gluon, n_split=None, last_first=True, monkeypatch=None, rows=256):
    """(partial lists, selections) of one call, by the Gluon scan (its tiles of ``rows`` rows) or
    by the Triton kernel on the same tiles and splits."""
    a = prob.index_args()
    q_idx, cfg = a["q_idx"], a["config"]
    total_q, hkv, _ = q_idx.shape
    batch, max_pages = a["page_table"].shape
    monkeypatch.setattr(index_ws, "_TILE_ROWS", rows)
    monkeypatch.setattr(ib, "_INDEX_WS", True)
    monkeypatch.setattr(ib, "_LAST_FIRST", last_first)
    plan = ib.plan_index(total_q, batch, max_pages, hkv, cfg, q_idx.device, n_split=n_split, dtype=q_idx.dtype,
                         index_dim=q_idx.shape[-1])
    assert plan.block_t * plan.hkv_p == rows and plan.gluon
    if not gluon:
        monkeypatch.setattr(ib, "_INDEX_WS", False)
        plan = ib.plan_index(total_q, batch, max_pages, hkv, cfg, q_idx.device, n_split=plan.n_split,
                             block_t=plan.block_t, num_warps=8)
    tiles, token_req = call_rows(a["cu_seqlens_q"], total_q, plan.block_t)
    part = plan.workspace(total_q, hkv, q_idx.device).fill_(_POISON)
    out = torch.full((total_q, hkv, cfg.topk), -7, dtype=torch.int32, device=q_idx.device)
    ib.launch_index(q_idx, a["k_idx_cache"], a["page_table"], a["cu_seqlens_q"], a["seq_lens_k"], cfg, plan,
                    tiles.tile_cum, tiles.grid_tiles, token_req, part, out)
    return part, out


CASES = {
    # requests of mixed lengths: short ones (every block forced or selected), chunks after a prefix
    "mixed": ([300, 200, 420, 33], [2085, 2056, 9000, 33], {}),
    # one long request, a tile's range split across programs
    "long": ([700], [70000], {}),
    # an 8-group model: 16 tokens a 128-row tile, 32 a 256-row one; init blocks forced too
    "hkv8_init": ([260, 97], [5000, 3000], dict(num_kv_heads=8, num_q_heads=64, num_init_blocks=2)),
    # 3 groups padded to 4 (rows of no group), two local blocks
    "hkv3_local2": ([333, 40], [7000, 2100], dict(num_kv_heads=3, num_q_heads=48, num_local_blocks=2)),
}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("n_split", [None, 1, 3, 8], ids=["plan", "s1", "s3", "s8"])
@pytest.mark.parametrize("rows", [256, 128], ids=["rows256", "rows128"])
def test_lists_match_triton(case, dtype, n_split, rows, launches, monkeypatch):
    q_lens, seq_lens, shapes = CASES[case]
    prob = hb.make_big_problem(q_lens, seq_lens, dtype=dtype, seed=len(case) + 17, **shapes)
    want_part, want = _lists(prob, False, n_split, monkeypatch=monkeypatch, rows=rows)
    assert launches == []
    got_part, got = _lists(prob, True, n_split, monkeypatch=monkeypatch, rows=rows)
    assert len(launches) == 1
    assert (want != -7).all()
    assert (want_part != _POISON).any()  # (the lists compared are written ones, not only poison)
    torch.testing.assert_close(got_part, want_part, rtol=0, atol=0)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize("last_first", [True, False], ids=["last_first", "in_order"])
@pytest.mark.parametrize("rows", [256, 128], ids=["rows256", "rows128"])
def test_tile_order_and_repeat(last_first, rows, launches, monkeypatch):
    prob = hb.make_big_problem([1000, 129], [40000, 129], dtype=torch.bfloat16, seed=5)
    want_part, want = _lists(prob, False, last_first=last_first, monkeypatch=monkeypatch, rows=rows)
    runs = [_lists(prob, True, last_first=last_first, monkeypatch=monkeypatch, rows=rows) for _ in range(3)]
    assert len(launches) == 3
    for part, out in runs:
        assert torch.equal(part, want_part) and torch.equal(out, want)


def test_selections_as_the_triton_plan(launches, monkeypatch):
    # index_topk with the Gluon scan's tiles selects as with the Triton kernel's own 128-row
    # tiles (other splits, other lists; the same selection rule)
    prob = hb.make_big_problem([700, 300], [30000, 4000], dtype=torch.bfloat16, seed=12)
    monkeypatch.setattr(ib, "_INDEX_WS", False)
    want = ib.index_topk(**prob.index_args())
    monkeypatch.setattr(ib, "_INDEX_WS", True)
    got = ib.index_topk(**prob.index_args())
    assert len(launches) == 1
    assert torch.equal(got, want)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_selections_against_the_reference(dtype, launches, monkeypatch):
    # the float64 reference, independent of either kernel: equal up to genuine ties, and the
    # selection contract's structure
    prob = hb.make_big_problem([300, 200, 33], [5000, 2056, 33], dtype=dtype, seed=21)
    monkeypatch.setattr(ib, "_INDEX_WS", True)
    got = ib.index_topk(**prob.index_args())
    assert len(launches) == 1
    a = {k: (v.cpu() if torch.is_tensor(v) else v) for k, v in prob.index_args().items()}
    check_selection_contract(got.cpu(), a["cu_seqlens_q"], a["seq_lens_k"], a["config"])
    compare_topk(got.cpu(), reference.index_topk(**a), reference.index_scores(**a), a["q_idx"], a["k_idx_cache"],
                 a["config"])


def test_leaves_other_calls_to_triton(launches, monkeypatch):
    # decode-sized tiles (under 128 rows) and launch overrides take the Triton kernel
    prob = hb.make_big_problem([3, 1], [9000, 4000], dtype=torch.bfloat16, seed=9)
    monkeypatch.setattr(ib, "_INDEX_WS", True)
    ib.index_topk(**prob.index_args())
    big = hb.make_big_problem([300], [9000], dtype=torch.bfloat16, seed=10)
    ib.index_topk(**big.index_args(), num_warps=8)
    ib.index_topk(**big.index_args(), block_t=16)
    assert launches == []
    ib.index_topk(**big.index_args())
    assert len(launches) == 1


@pytest.mark.parametrize("what", ["m3", "m3_long", "index_dim64", "block64", "topk32", "fp32", "no_dtype", "fp8"])
def test_plan_takes_gluon_tiles_only_where_supported(what):
    # plan_index gives the Gluon scan's tiles (256 rows on long contexts) only to plans it can take
    # (the tile size is fixed by the plan: a call it then refused would run the Triton kernel on
    # 256-row tiles)
    shapes = {"index_dim64": dict(index_dim=64), "block64": dict(block_size=64), "topk32": dict(topk=32)}.get(what, {})
    dtype = torch.float32 if what == "fp32" else torch.bfloat16
    prob = hb.make_big_problem([300], [40000 if what == "m3_long" else 9000], dtype=dtype, seed=3, **shapes)
    a = prob.index_args()
    q = a["q_idx"]
    plan = ib.plan_index(q.shape[0], 1, a["page_table"].shape[1], q.shape[1], prob.config, q.device,
                         fp8=what == "fp8", dtype=None if what == "no_dtype" else q.dtype, index_dim=q.shape[-1])
    if what.startswith("m3"):  # 71 / 313 blocks: 128 / 256 rows (index_ws._WIDE_MIN_PAGES)
        assert plan.gluon and plan.block_t * plan.hkv_p == (256 if what == "m3_long" else 128)
    else:
        assert not plan.gluon and plan.block_t * plan.hkv_p == 128
