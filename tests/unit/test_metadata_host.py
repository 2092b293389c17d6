"""Host-side metadata of a call (msa_sgl/ops/metadata.py): the request of every query row and
the index branch's tile map (one launch, metadata.call_rows), and msa_attention building them
once for both branches (each torch op costs tens of us of host time
on the GPU machine; benchmarks/NOTES.md v21)."""

import pytest
import torch

from harness.impls import KERNEL_DEVICE, on_cpu
from harness.tolerance import output_error
from msa_sgl import msa_attention, reference
from msa_sgl.ops import index_branch as ib
from msa_sgl.ops import main_branch as mb
from msa_sgl.ops import metadata as md


def _cu(q_lens):
    return torch.tensor([0] + torch.tensor(q_lens).cumsum(0).tolist(), dtype=torch.int32)


@pytest.mark.parametrize("q_lens", [[5], [0, 3, 0, 0, 4, 1, 0], [1] * 9, [0], [7, 0], [0, 0, 2]],
                         ids=["one", "empty_between", "decode_9", "no_queries", "empty_last", "empty_first"])
def test_token_requests_names_each_rows_request(q_lens):
    cu = _cu(q_lens)
    want = torch.repeat_interleave(torch.arange(len(q_lens), dtype=torch.int32), torch.tensor(q_lens))
    got = md.token_requests(cu.to(KERNEL_DEVICE), sum(q_lens))
    assert got.dtype == torch.int32 and torch.equal(got.cpu(), want)


def test_token_requests_stay_in_range_outside_the_contract():
    # cu_seqlens_q[-1] < total_q (rows past the last request) and a decreasing entry: every row
    # still names a request in [0, batch), so no kernel indexes a page table past its rows
    cu = torch.tensor([0, 4, 2, 3], dtype=torch.int32, device=KERNEL_DEVICE)
    got = md.token_requests(cu, 8).cpu()
    assert got.min() >= 0 and got.max() <= 2


@pytest.mark.parametrize("block_t", [1, 4, 32])
@pytest.mark.parametrize("n_req", [1, 7, 1500], ids=["1_request", "7_requests", "1500_requests"])
def test_call_rows_equals_tile_map_and_token_requests(n_req, block_t):
    # one launch for both; 1500 requests and ~3000 rows: several programs of 1024 rows, and the
    # tile sums carried over two 1024-request chunks
    g = torch.Generator().manual_seed(n_req + block_t)
    q_lens = torch.randint(0, 5, (n_req,), generator=g).tolist()
    q_lens[-1] += 1
    cu = _cu(q_lens).to(KERNEL_DEVICE)
    total_q = sum(q_lens)
    tiles, token_req = md.call_rows(cu, total_q, block_t)
    want = md.build_tile_map(cu, total_q, block_t)
    assert torch.equal(tiles.tile_cum.cpu(), want.tile_cum.cpu())
    assert (tiles.block_t, tiles.grid_tiles, tiles.search_steps) == (want.block_t, want.grid_tiles, want.search_steps)
    assert token_req.dtype == torch.int32 and torch.equal(token_req.cpu(), md.token_requests(cu, total_q).cpu())


def test_call_rows_stay_in_range_outside_the_contract():
    cu = torch.tensor([0, 4, 0, 3], dtype=torch.int32, device=KERNEL_DEVICE)  # request 1: length -4
    tiles, token_req = md.call_rows(cu, 8, 2)
    assert token_req.cpu().min() >= 0 and token_req.cpu().max() <= 2
    assert tiles.tile_cum.cpu().tolist() == [0, 2, 2, 4]  # no tiles for a negative length


def test_msa_attention_builds_the_row_requests_once(monkeypatch):
    from harness import bench as hb
    from harness.problems import Problem, ProblemSpec

    p = Problem.from_spec(ProblemSpec(q_lens=(20, 9), seq_lens=(90, 70), block_size=16, topk=2, dtype="float16",
                                      seed=3, num_kv_heads=2, group_size=2, head_dim=32, index_dim=16))
    prob = hb.BigProblem({k: v.to(KERNEL_DEVICE) for k, v in p.args().items()}, p.config, p.q_lens, p.seq_lens)
    calls = []

    def spy(name, fn):
        return lambda *a, **k: calls.append(name) or fn(*a, **k)

    real = {name: getattr(md, name) for name in ("token_requests", "call_rows")}
    for mod in (md, ib, mb):
        for name, fn in real.items():
            if hasattr(mod, name):
                monkeypatch.setattr(mod, name, spy(name, fn))
    out = msa_attention(**prob.msa_args())
    assert calls == ["call_rows"]  # the index branch's one launch; the main branch reuses its rows
    output_error(out.cpu(), reference.msa_attention(**on_cpu(prob.msa_args())), torch.float16)


def test_decode_wrapper_row_requests_stay_in_range_outside_the_contract():
    # plan() with cu_seqlens_q ending before total_q (rows past the last request): every row still
    # names a request in [0, batch), as metadata.token_requests, so no kernel reads past the
    # page table's rows; within the contract the same values as token_requests
    from msa_sgl import MSAConfig, MSADecodeWrapper

    w = MSADecodeWrapper(MSAConfig(block_size=16, topk=2), num_q_heads=4, num_kv_heads=2, head_dim=16, index_dim=16,
                         max_batch=3, max_pages=4, max_q_len=2, dtype=torch.float16, device=KERNEL_DEVICE)
    table = torch.zeros(3, 4, dtype=torch.int32, device=KERNEL_DEVICE)
    lens = torch.full((3,), 40, dtype=torch.int32, device=KERNEL_DEVICE)
    for cu, total_q in (([0, 2, 2, 3], 3), ([0, 1, 1, 1], 4)):
        cu = torch.tensor(cu, dtype=torch.int32, device=KERNEL_DEVICE)
        w.plan(table, cu, lens, total_q=total_q)
        got = w._token_req[:total_q].cpu()
        assert got.min() >= 0 and got.max() <= 2
        if int(cu[-1]) == total_q:
            assert torch.equal(got.to(torch.int32), md.token_requests(cu, total_q).cpu())


def _compositions(total, parts):
    """Every way to give ``parts`` requests ``total`` tokens in all (empty requests included)."""
    if parts == 1:
        yield (total,)
        return
    for first in range(total + 1):
        for rest in _compositions(total - first, parts - 1):
            yield (first,) + rest


@pytest.mark.parametrize("tight", [True, False], ids=["tight", "loose"])
@pytest.mark.parametrize("block_t", [1, 2, 4, 8, 32])
def test_tile_grid_bounds_every_length_split(block_t, tight, monkeypatch):
    # tile_grid covers the tiles of every split of total_q tokens over batch requests; the tight
    # bound (the default) equals the most tiles some split has, the looser one (before v32) never
    # undercounts either
    monkeypatch.setattr(md, "TIGHT_TILE_GRID", tight)
    for batch in range(1, 5):
        for total_q in range(0, 11):
            most = max(sum(-(-q // block_t) for q in c) for c in _compositions(total_q, batch))
            got = md.tile_grid(total_q, batch, block_t)
            assert got >= most, (batch, total_q, got, most)
            if tight:
                assert got == most, (batch, total_q, got, most)
    if tight:  # one MTP request of 8 tokens in 8-token tiles: one tile (the loose bound: 2)
        assert md.tile_grid(8, 1, 8) == 1
