"""The dense rows of msa_attention (main_branch._dense_rows_kernel): queries whose own block is
below topk select every block up to it (MSA.md section 3), so they take a causal flash-attention
tile over the paged cache instead of the reverse index; the KV-outer form then leaves them out of
its tiles and its merge. Checked against the float64 reference on the harness's poisoned
problems, with the rows each kernel writes checked exactly, and the call whose page table is at
most topk blocks wide (every row dense), which skips the index branch."""

import pytest
import torch

from harness import bench as hb
from harness.impls import KERNEL_DEVICE, on_cpu
from harness.problems import Problem, ProblemSpec
from harness.tolerance import lse_error, output_error
from msa_sgl import msa_attention, reference
from msa_sgl import ops
from msa_sgl.ops import main_branch as mb

F16, F32 = torch.float16, torch.float32
SHAPES = dict(num_kv_heads=2, group_size=4, head_dim=32, index_dim=16)
G16 = dict(num_kv_heads=2, group_size=16, head_dim=64, index_dim=16)  # 8 queries a tile
G3_D128 = dict(num_kv_heads=2, group_size=3, head_dim=128, index_dim=16)  # G padded to 4


def _case(q_lens, seq_lens, block_size, topk, dtype, shapes, seed=5, extra_cols=1):
    """The harness's problem (NaN in every cache slot, page and table entry a request does not
    own: a kernel that reads one fails) with its arguments on KERNEL_DEVICE."""
    p = Problem.from_spec(ProblemSpec(q_lens=tuple(q_lens), seq_lens=tuple(seq_lens), block_size=block_size, topk=topk,
                                      dtype=str(dtype).removeprefix("torch."), seed=seed,
                                      extra_cols=extra_cols, **shapes))
    return hb.BigProblem({k: v.to(KERNEL_DEVICE) for k, v in p.args().items()}, p.config, p.q_lens, p.seq_lens)


def _problem(block_size, topk, dtype, shapes, seed=5):
    B, span = block_size, topk * block_size
    # request 0: no prefix, dense rows then sparse ones (the switch mid-tile); 1: a prefix just
    # below the span (3 dense rows); 2: a prefix past it (no dense rows); 3: no queries;
    # 4: every row dense, the last one a partial block; 5, 6: three queries from positions 30 and
    # 14, so a tile's first query sits two keys before a sub-block's end and its last one on a
    # sub-block's first key (16 or 32 keys)
    q_lens = [span + 2 * B + 7, 9, 6, 0, span - 3, 3, 3]
    prefixes = [0, span - 3, span + B + 1, B, 0, 30, 14]
    return _case(q_lens, [p + q for p, q in zip(prefixes, q_lens)], B, topk, dtype, shapes, seed)


def _dense_row_mask(prob):
    rows = []
    span = prob.config.topk * prob.config.block_size
    for q_len, seq_len in zip(prob.q_lens, prob.seq_lens):
        rows += [seq_len - q_len + i < span for i in range(q_len)]
    return torch.tensor(rows)


def _check_dense_rows_only(prob, dtype):
    """Runs the dense kernel alone on ``prob``: its dense rows against the float64 reference, every
    other row left as it was (NaN)."""
    a = prob.args
    total_q, hq, d = a["q"].shape
    out = torch.full((total_q, hq, d), float("nan"), dtype=dtype, device=KERNEL_DEVICE)
    lse = torch.full((total_q, hq), float("nan"), dtype=torch.float32, device=KERNEL_DEVICE)
    mb.launch_dense_rows(a["q"], a["k_cache"], a["v_cache"], a["page_table"], a["cu_seqlens_q"], a["seq_lens_k"],
                         prob.config, out, lse)
    dense = _dense_row_mask(prob)
    assert 0 < int(dense.sum()) < total_q
    out, lse = out.cpu(), lse.cpu()
    assert torch.isnan(out[~dense]).all() and torch.isnan(lse[~dense]).all()  # other rows untouched
    ref, ref_lse = reference.dense_attention(**on_cpu({k: a[k] for k in (
        "q", "k_cache", "v_cache", "page_table", "cu_seqlens_q", "seq_lens_k")}), return_lse=True)
    output_error(out[dense], ref[dense], dtype)
    lse_error(lse[dense], ref_lse[dense], dtype)


@pytest.mark.parametrize("tile_map", [True, False], ids=["tile_map", "shape_grid"])
@pytest.mark.parametrize("block_size,topk,sub,rows,dtype,shapes", [
    (16, 4, 16, 128, F16, SHAPES), (32, 3, 16, 128, F16, SHAPES), (32, 3, 32, 64, F32, SHAPES),
    (16, 2, 16, 128, F16, G16), (16, 2, 16, 16, F16, G16), (64, 2, 64, 64, F16, G3_D128)],
    ids=["b16_k4", "b32_k3_sub16", "fp32_b32_k3_rows64", "g16_b16_k2", "g16_one_query_tiles", "g3_d128_b64_sub64"])
def test_dense_kernel_writes_exactly_the_dense_rows(monkeypatch, tile_map, block_size, topk, sub, rows, dtype, shapes):
    monkeypatch.setattr(mb, "_DENSE_SUB", sub)
    monkeypatch.setattr(mb, "_DENSE_TILE_ROWS", rows)
    if not tile_map:
        monkeypatch.setattr(mb, "_DENSE_MAP_MAX_BATCH", 0)
    _check_dense_rows_only(_problem(block_size, topk, dtype, shapes), dtype)


class _LaunchSpy:
    """Stands in for the dense kernel: records each launch's grid and BATCH_P, then runs it."""

    def __init__(self, kernel):
        self.kernel, self.launches = kernel, []

    def __getitem__(self, grid):
        def launch(*args, **kw):
            self.launches.append((grid, kw["BATCH_P"]))
            return self.kernel[grid](*args, **kw)
        return launch


@pytest.mark.parametrize("n_req", [5, 32, 37], ids=["5_requests", "32_requests_every_lane", "37_requests"])
def test_dense_kernel_tile_map_over_many_short_requests(monkeypatch, n_req):
    # requests of 0-9 queries after prefixes of 0-79 tokens (span 64: some requests all dense, some
    # partly, some not at all; some without queries), with 4-query tiles: the tile map's grid is
    # about a third of the shape grid's here, and a program that took the wrong request or tile
    # would leave a dense row NaN or write one that is not
    spy = _LaunchSpy(mb._dense_rows_kernel)
    monkeypatch.setattr(mb, "_dense_rows_kernel", spy)
    monkeypatch.setattr(mb, "_DENSE_SUB", 16)
    monkeypatch.setattr(mb, "_DENSE_TILE_ROWS", 16)
    g = torch.Generator().manual_seed(n_req)
    q_lens = torch.randint(0, 10, (n_req,), generator=g).tolist()
    prefixes = torch.randint(0, 80, (n_req,), generator=g).tolist()
    q_lens[0], prefixes[0] = 9, 0
    prob = _case(q_lens, [p + q for p, q in zip(prefixes, q_lens)], 16, 4, F16, SHAPES, seed=n_req)
    mq = mb.dense_tile_queries(8, 2)
    bound = mb._dense_tiles_bound(sum(q_lens), n_req, prob.config, mq)
    assert bound < n_req * mb.dense_rows_tiles(sum(q_lens), prob.config, mq)
    _check_dense_rows_only(prob, F16)
    assert spy.launches == [((bound, 2), 32 if n_req <= 32 else 64)]  # the tile map's grid, its lanes


@pytest.mark.parametrize("dense_rows", [True, False], ids=["dense_rows", "kv_outer_only"])
@pytest.mark.parametrize("workspace", [None, 1], ids=["one_pass", "row_passes"])
def test_msa_attention_kv_outer_with_dense_rows(monkeypatch, dense_rows, workspace):
    monkeypatch.setattr(mb, "KV_OUTER_MIN_QUERIES", 0)  # KV-outer at toy sizes
    monkeypatch.setattr(mb, "_DENSE_ROWS", dense_rows)
    if workspace is not None:
        monkeypatch.setattr(mb, "KV_OUTER_WORKSPACE_BYTES", workspace)
    prob = _problem(16, 4, F16, SHAPES)
    calls = []
    launch = mb.launch_dense_rows
    monkeypatch.setattr(mb, "launch_dense_rows", lambda *a, **k: calls.append(1) or launch(*a, **k))
    out, lse = msa_attention(**prob.msa_args(), return_lse=True)
    assert len(calls) == int(dense_rows)
    assert torch.isfinite(out).all() and torch.isfinite(lse).all()  # every row written, by one kernel or the other
    ref, ref_lse = reference.msa_attention(**on_cpu(prob.msa_args()), return_lse=True)
    output_error(out.cpu(), ref, F16)
    lse_error(lse.cpu(), ref_lse, F16)


def test_every_row_dense_skips_the_index_branch(monkeypatch):
    # page table 4 blocks wide, topk 4: every query's own block is below topk
    prob = _case([40, 17, 64], [40, 50, 64], 16, 4, F16, SHAPES, seed=3, extra_cols=0)
    assert prob.args["page_table"].shape[1] <= prob.config.topk

    def no_index(*a, **k):
        raise AssertionError("index_topk ran for a call whose rows are all dense")

    monkeypatch.setattr(ops, "index_topk", no_index)
    out, lse = msa_attention(**prob.msa_args(), return_lse=True)
    assert torch.equal(msa_attention(**prob.msa_args()), out)
    ref, ref_lse = reference.msa_attention(**on_cpu(prob.msa_args()), return_lse=True)
    output_error(out.cpu(), ref, F16)
    lse_error(lse.cpu(), ref_lse, F16)


def test_topk_idx_none_needs_every_row_dense():
    prob = _problem(16, 4, F16, SHAPES)
    with pytest.raises(ValueError, match="topk_idx"):
        mb.sparse_attention(**prob.attention_args(None), dense_rows=True)


def test_kv_outer_tiles_leave_out_the_dense_rows():
    prob = _problem(16, 4, F16, SHAPES)
    a = prob.args
    topk_idx = reference.index_topk(**on_cpu(prob.index_args())).to(KERNEL_DEVICE)
    total_q, hkv, topk = topk_idx.shape
    token_req = ops.metadata.token_requests(a["cu_seqlens_q"], total_q)
    batch, max_pages = a["page_table"].shape

    def valid_entries(skip):
        t = ops.metadata.build_block_tiles(topk_idx, a["cu_seqlens_q"], a["seq_lens_k"], token_req, 0, total_q, batch,
                                           max_pages, 16, 8, a["page_table"], a["k_cache"].shape[0],
                                           skip_dense=skip)
        return int(t.tile_info[:, 1].sum())

    dense = _dense_row_mask(prob)
    sel = topk_idx.cpu()
    pos = torch.cat([torch.arange(s - q, s) for q, s in zip(prob.q_lens, prob.seq_lens)])
    ok = (sel >= 0) & (sel <= (pos // 16)[:, None, None])
    assert valid_entries(False) == int(ok.sum())
    assert valid_entries(True) == int(ok[~dense].sum()) < int(ok.sum())


@pytest.mark.parametrize("q_lens,want", [
    ([16384], True), ([2048], True), ([2048] * 8, True), ([512] * 32, True), ([64] * 256, True), ([1] * 1024, True),
    ([2000] + [10] * 100, True), ([2] * 1025, False), ([2048] * 1025, True), ([2000] + [10] * 1100, False)],
    ids=["chunk", "prompt_2k", "8x2k", "32x512", "256x64", "decode_1024", "one_long_many_short",
         "decode_1025", "1025x2k", "one_long_1100_short"])
def test_dense_rows_only_where_the_grid_is_mostly_used(q_lens, want):
    # M3 shapes: 64-row tiles of 4 queries x 16 heads, 512 tiles a request (2048 dense queries);
    # up to 1024 requests the tile map sizes the grid, beyond it the shape grid must be mostly used
    from msa_sgl import MSAConfig

    assert mb.dense_rows_pay(sum(q_lens), len(q_lens), 64, 4, MSAConfig()) is want


def test_msa_attention_without_dense_rows_when_they_do_not_pay(monkeypatch):
    monkeypatch.setattr(mb, "_DENSE_MAP_MAX_BATCH", 0)
    monkeypatch.setattr(mb, "_DENSE_MAX_WASTE", 0)
    prob = _case([40, 17, 64], [40, 50, 64], 16, 4, F16, SHAPES, seed=3, extra_cols=0)  # every row dense
    assert prob.args["page_table"].shape[1] <= prob.config.topk
    calls = []
    index, launch = ops.index_topk, mb.launch_dense_rows
    monkeypatch.setattr(ops, "index_topk", lambda *a, **k: calls.append("index") or index(*a, **k))
    monkeypatch.setattr(mb, "launch_dense_rows", lambda *a, **k: calls.append("dense") or launch(*a, **k))
    out = msa_attention(**prob.msa_args())
    assert calls == ["index"]
    output_error(out.cpu(), reference.msa_attention(**on_cpu(prob.msa_args())), F16)


@pytest.mark.parametrize("seq_len,stages", [(64, 1), (512, 1), (513, mb._DENSE_STAGES)], ids=["64", "512", "513"])
def test_dense_kernel_takes_one_stage_for_narrow_page_tables(monkeypatch, seq_len, stages):
    # page tables of at most _DENSE_ONE_STAGE_KEYS keys: one stage (three programs an SM, NOTES v20b)
    prob = _case([40, 2, 20], [seq_len, seq_len - 5, 20], 16, 2, F16, SHAPES, seed=2, extra_cols=0)
    assert prob.args["page_table"].shape[1] * 16 == -(-seq_len // 16) * 16
    seen = []
    opts = mb.launch_options
    monkeypatch.setattr(mb, "launch_options", lambda w, st, *a, **k: seen.append(st) or opts(w, st, *a, **k))
    _check_dense_rows_only(prob, F16)
    assert seen == [stages]


@pytest.mark.parametrize("tile_map", [True, False], ids=["tile_map", "shape_grid"])
def test_dense_kernel_confines_metadata_outside_the_contract(monkeypatch, tile_map):
    # request 0 claims 256 queries in a 100-token cache (seq_len < q_len: a prefix of -156, outside
    # the contract). The kernel takes its prefix as 0, so it has the span's 32 dense rows, not
    # 188: without that, the tile map gave it 12 tiles instead of 2 and pushed the other requests'
    # tiles past the grid's end (their dense rows left unwritten). Every other request's rows must
    # be exactly what the call with valid metadata writes.
    if not tile_map:
        monkeypatch.setattr(mb, "_DENSE_MAP_MAX_BATCH", 0)
    prob = _case([256, 20, 20], [256, 20, 25], 16, 2, F16, SHAPES, seed=4)
    a = prob.args
    total_q, hq, d = a["q"].shape

    def run(seq_lens_k):
        out = torch.full((total_q, hq, d), float("nan"), dtype=F16, device=KERNEL_DEVICE)
        lse = torch.full((total_q, hq), float("nan"), dtype=torch.float32, device=KERNEL_DEVICE)
        mb.launch_dense_rows(a["q"], a["k_cache"], a["v_cache"], a["page_table"], a["cu_seqlens_q"], seq_lens_k,
                             prob.config, out, lse)
        return out.cpu(), lse.cpu()

    want, want_lse = run(a["seq_lens_k"])
    bad = a["seq_lens_k"].clone()
    bad[0] = 100
    out, lse = run(bad)
    others = torch.arange(total_q) >= 256
    assert torch.isfinite(want[others]).all()  # every row of requests 1, 2 is dense (span 32)
    assert torch.equal(out[others], want[others]) and torch.equal(lse[others], want_lse[others])
    span = prob.config.topk * prob.config.block_size
    assert torch.isfinite(out[:span]).all() and torch.isnan(out[span:256]).all()  # its own span only
