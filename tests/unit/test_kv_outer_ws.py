"""The warp-specialized Gluon KV-outer partial kernel (ops.kv_outer_ws) on the GPU, with the causal
mask on diagonal tiles only (the default) and on every tile (kv_outer_ws._DIAG): against the
float64 reference, bit for bit against the Triton partial kernel's whole-block form (the same
MMAs and arithmetic), with group and row-range passes, run to run, and the calls it must leave to
the Triton kernel. Gluon has no interpreter, so these tests need a Hopper GPU (they skip
elsewhere; tests/unit/test_hopper_compile.py compiles the kernel for sm_90 on any machine, and the
Triton kernel's CPU tests keep covering the KV-outer form's metadata and merge).

The cache is poisoned with NaN past every request's last key (in its last page) and in the pages
nobody owns: the producer zeroes V rows past a request's keys, and any read of a poisoned K/V row
into a real output shows as NaN. Every test counts the Gluon launches, so a test that meant to run
the Gluon kernel cannot pass on the Triton one."""

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

# three requests: own blocks ending 37, 8 and 128 keys in (8: the V zeroing's chunk edge); contexts
# from one block past topk to 32 blocks, so rows with every block selected (p < topk) and sparse
# rows both occur
Q_LENS, SEQ_LENS = [300, 200, 420], [2085, 2056, 4096]


def _problem(dtype, seed, **shapes):
    prob = hb.make_big_problem(Q_LENS, SEQ_LENS, dtype=dtype, seed=seed, spare_pages=2, **shapes)
    a = prob.args
    B = prob.config.block_size
    owned = torch.zeros(a["k_cache"].shape[0], dtype=torch.bool)
    for b, s in enumerate(SEQ_LENS):
        pages = a["page_table"][b, :(s + B - 1) // B].cpu().long()
        owned[pages] = True
        if s % B:  # slots past the last key of the request's last page
            last = int(pages[-1])
            a["k_cache"][last, s % B:] = float("nan")
            a["v_cache"][last, s % B:] = float("nan")
    a["k_cache"][~owned.to(a["k_cache"].device)] = float("nan")
    a["v_cache"][~owned.to(a["v_cache"].device)] = float("nan")
    return prob


@pytest.fixture
def launches(monkeypatch):
    """Counts the Gluon kernel's launches (one per KV-outer pass), with the partial outputs and
    LSEs poisoned with NaN before each (the caching allocator would otherwise hand a repeated call
    the previous call's partials, and a store the kernel dropped would go unseen)."""
    calls = []
    real = kv_outer_ws.launch_kv_outer_ws

    def counted(*args, **kwargs):
        calls.append(args[3].ng)  # the pass's groups
        args[4].fill_(float("nan"))  # o_part
        args[5].fill_(float("nan"))  # lse_part
        return real(*args, **kwargs)

    monkeypatch.setattr(kv_outer_ws, "launch_kv_outer_ws", counted)
    return calls


@pytest.fixture(params=[True, False], ids=["diag_mask", "full_mask"])
def kernel(request, monkeypatch):
    """The kernel with the causal mask on diagonal tiles only, then on every tile (_DIAG)."""
    monkeypatch.setattr(kv_outer_ws, "_DIAG", request.param)
    return request.param


def _run(args, **kw):
    return mb.sparse_attention(**args, method="kv_outer", return_lse=True, **kw)


@pytest.mark.parametrize("dtype,shapes", [(torch.bfloat16, {}), (torch.float16, dict(num_q_heads=32, num_kv_heads=2))],
                         ids=["bf16_hkv4", "fp16_hkv2"])
def test_ws_matches_reference_and_triton(monkeypatch, launches, kernel, dtype, shapes):
    prob = _problem(dtype, 5, **shapes)
    topk = ops.index_topk(**prob.index_args())
    args = prob.attention_args(topk)
    out, lse = _run(args)
    assert launches, "the Gluon kernel did not run"
    ref, ref_lse = reference.sparse_attention(**on_cpu(args), return_lse=True)
    output_error(out, ref, dtype)
    lse_error(lse, ref_lse, dtype)
    # the Triton kernel with the block whole (_KV_SUB 0, which also keeps the Triton kernel): the
    # same tiles, MMAs and arithmetic, so the same bits
    n = len(launches)
    monkeypatch.setattr(mb, "_KV_SUB", 0)
    tri, tri_lse = _run(args)
    assert len(launches) == n, "the Triton kernel was asked for, the Gluon one ran"
    assert torch.equal(out, tri) and torch.equal(lse, tri_lse)


def test_ws_passes_and_runs_bitwise(launches, kernel):
    """Group passes (two groups a pass, the second from group 2) and row ranges of one group (a
    small workspace) give the one-pass output bit for bit, and so do two more runs of one call (no
    atomics; each entry's partial comes from one tile)."""
    prob = _problem(torch.bfloat16, 9)
    topk = ops.index_topk(**prob.index_args())
    args = prob.attention_args(topk)
    one, one_lse = _run(args, workspace_bytes=8 << 30)
    assert launches == [4]
    for ws_bytes, groups in ((128 << 20, 2), (8 << 20, 1)):
        launches.clear()
        out, lse = _run(args, workspace_bytes=ws_bytes)
        assert len(launches) >= 2 and set(launches) == {groups}, (ws_bytes, launches)
        assert torch.equal(out, one) and torch.equal(lse, one_lse), f"workspace {ws_bytes}"
    for _ in range(2):
        out, lse = _run(args, workspace_bytes=8 << 30)
        assert torch.equal(out, one) and torch.equal(lse, one_lse)


def test_ws_leaves_other_calls_to_triton(monkeypatch, launches):
    """Calls the kernel is not written for run the Triton kernel, with the same result as with
    the Gluon kernel switched off: 8 heads a group, a strided q (a view of a wider projection), a
    cache 2 bytes off 16-byte alignment, and explicit Triton launch settings."""
    prob = _problem(torch.bfloat16, 3)
    topk = ops.index_topk(**prob.index_args())
    args = prob.attention_args(topk)
    q = args["q"]
    wide = torch.empty(q.shape[0], q.shape[1], 2 * q.shape[2], dtype=q.dtype, device=q.device)
    wide[..., :q.shape[2]] = q
    k = args["k_cache"]
    flat = torch.empty(k.numel() + 8, dtype=k.dtype, device=k.device)
    k_off = flat[1:1 + k.numel()].view(k.shape)
    k_off.copy_(k)
    g8 = hb.make_big_problem([300], [2085], dtype=torch.bfloat16, seed=4, num_q_heads=32)  # 4 groups of 8
    cases = {"g8": (g8.attention_args(ops.index_topk(**g8.index_args())), {}),
             "strided_q": (dict(args, q=wide[..., :q.shape[2]]), {}),
             "misaligned_k": (dict(args, k_cache=k_off), {}),
             "num_warps": (args, dict(num_warps=8))}
    for name, (a, kw) in cases.items():
        on, on_lse = _run(a, **kw)
        assert not launches, f"{name}: the Gluon kernel ran"
        monkeypatch.setattr(mb, "_KV_WS", False)
        off, off_lse = _run(a, **kw)
        monkeypatch.setattr(mb, "_KV_WS", True)
        assert torch.equal(on, off) and torch.equal(on_lse, off_lse), name


@pytest.mark.parametrize("programs", ["1", "3", "tiles-1", "tiles+5"])
@pytest.mark.parametrize("q_lens", [[300, 200, 420], [3, 4, 1]], ids=["prefill", "decode_like"])
def test_ws_any_number_of_programs(monkeypatch, launches, kernel, q_lens, programs):
    """Persistent programs walking many tiles, one or two, or none (past the tiles: launched up to
    the pass's tile rows) - the producer's and consumers' barrier phases, the pipeline's first and
    last tiles - and tiles of at most 4 entries (decode-like: the second consumer has no rows):
    bit for bit the Triton kernel's whole-block form, with the partials poisoned before each
    launch (the launches fixture)."""
    prob = hb.make_big_problem(q_lens, SEQ_LENS, dtype=torch.bfloat16, seed=7, spare_pages=2)
    topk = ops.index_topk(**prob.index_args())
    args = prob.attention_args(topk)
    real = kv_outer_ws.launch_kv_outer_ws  # (the launch counter)

    def forced(*a, **k):
        tiles = int((a[3].tile_info[:, 1] > 0).sum())  # (a test may sync)
        n = {"1": 1, "3": 3, "tiles-1": max(1, tiles - 1), "tiles+5": tiles + 5}[programs]
        return real(*a[:9], n, *a[10:], **k)

    monkeypatch.setattr(kv_outer_ws, "launch_kv_outer_ws", forced)
    out, lse = _run(args)
    assert launches, "the Gluon kernel did not run"
    monkeypatch.setattr(mb, "_KV_SUB", 0)
    tri, tri_lse = _run(args)
    assert torch.equal(out, tri) and torch.equal(lse, tri_lse)


@pytest.mark.parametrize("dense_rows", [True, False], ids=["dense_row_kernel", "no_dense_rows"])
def test_ws_other_requests_untouched_by_a_request_with_q_len_above_seq_len(monkeypatch, launches, dense_rows):
    """The out-of-contract case of tests/unit/test_out_of_contract.py (a request with more queries
    than keys: its first queries would sit at negative positions) through msa_attention on the
    Gluon kernel, at M3 shapes: the other requests' rows are bit for bit the in-contract call's and
    finite; the bad request's rows are unspecified. Without the dense-row kernel the bad request's
    rows go through the block tiles, the Gluon partial kernel and the merge."""
    import msa_sgl

    monkeypatch.setattr(mb, "KV_OUTER_MIN_QUERIES", 1)  # (920 rows: below the KV-outer form's threshold)
    monkeypatch.setattr(mb, "_DENSE_ROWS", dense_rows)
    prob = _problem(torch.bfloat16, 11)
    good = msa_sgl.msa_attention(**prob.args, config=prob.config)
    assert launches, "the Gluon kernel did not run"
    bad_lens = prob.args["seq_lens_k"].clone()
    bad_lens[1] = 150  # request 1: 200 queries over 150 keys (positions -50..149)
    launches.clear()
    out = msa_sgl.msa_attention(**(prob.args | {"seq_lens_k": bad_lens}), config=prob.config)
    assert launches, "the Gluon kernel did not run"
    lo, hi = Q_LENS[0], Q_LENS[0] + Q_LENS[1]
    others = torch.cat([out[:lo], out[hi:]])
    assert torch.equal(others, torch.cat([good[:lo], good[hi:]]))
    assert bool(torch.isfinite(others).all())
