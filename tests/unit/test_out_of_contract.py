"""A request whose lengths break the contract (``q_len > seq_len_k``: its first queries would sit
at negative positions) is not checked in the hot path (device values). What msa_sgl promises for
it (README, "Errors"): the kernels stay inside their tensors and the other requests of the call
are untouched - their rows are bitwise what an in-contract call gives; the bad request's own rows
are unspecified. Checked through msa_attention with each main-branch form (the KV-outer one
forced below its row threshold) and through the decode wrapper (fp32 on the CPU interpreter; the
same code runs on the GPU)."""

import pytest
import torch

import msa_sgl
from harness import bench as hb
from harness.impls import KERNEL_DEVICE
from msa_sgl.ops import main_branch as mb

SHAPES = dict(num_q_heads=4, num_kv_heads=2, head_dim=32, index_dim=16, block_size=16, topk=4)
Q_LENS, SEQ_LENS = [5, 6, 3], [70, 20, 50]
BAD, BAD_LEN = 1, 4  # request 1: 6 queries over 4 keys (positions -2..3)


def _problem(q_lens=Q_LENS, seq_lens=SEQ_LENS):
    return hb.make_big_problem(q_lens, seq_lens, dtype=torch.float32, device=KERNEL_DEVICE, seed=3, **SHAPES)


def _rows_of_others(out, q_lens=Q_LENS):
    lo = sum(q_lens[:BAD])
    return torch.cat([out[:lo], out[lo + q_lens[BAD]:]])


@pytest.mark.parametrize("form", ["q_outer", "split", "kv_outer", "kv_outer_no_dense_rows"])
def test_other_requests_untouched_by_a_request_with_q_len_above_seq_len(monkeypatch, form):
    monkeypatch.setattr(mb, "SPLIT_MAX_QUERIES", (1 << 62) if form == "split" else -1)
    calls = []
    if form.startswith("kv_outer"):  # the form of long calls (tile build, dense rows, merge), forced here
        monkeypatch.setattr(mb, "KV_OUTER_MIN_QUERIES", 1)
        # the bad request's rows sit below topk blocks, so they take the dense-row kernel; without
        # it they go through the block tiles, the partial kernel and the merge
        monkeypatch.setattr(mb, "_DENSE_ROWS", form == "kv_outer")
        kv_outer = mb._kv_outer
        monkeypatch.setattr(mb, "_kv_outer", lambda *a, **k: calls.append(1) or kv_outer(*a, **k))
    prob = _problem()
    good = msa_sgl.msa_attention(**prob.args, config=prob.config)
    bad_lens = prob.args["seq_lens_k"].clone()
    bad_lens[BAD] = BAD_LEN
    out = msa_sgl.msa_attention(**(prob.args | {"seq_lens_k": bad_lens}), config=prob.config)
    assert len(calls) == (2 if form.startswith("kv_outer") else 0)
    assert torch.equal(_rows_of_others(out), _rows_of_others(good))
    assert bool(torch.isfinite(_rows_of_others(out)).all())


def test_decode_wrapper_other_requests_untouched(monkeypatch):
    q_lens = [2, 2, 2]
    prob = _problem(q_lens)
    a = prob.args
    good = hb.planned_decode_wrapper(prob, 2).run(a["q"], a["k_cache"], a["v_cache"], a["q_idx"],
                                                  a["k_idx_cache"]).clone()
    bad_lens = a["seq_lens_k"].clone()
    bad_lens[BAD] = 1  # 2 queries over 1 key
    bad = hb.BigProblem(a | {"seq_lens_k": bad_lens}, prob.config, q_lens, [70, 1, 50])
    ab = bad.args
    out = hb.planned_decode_wrapper(bad, 2).run(ab["q"], ab["k_cache"], ab["v_cache"], ab["q_idx"],
                                                ab["k_idx_cache"])
    assert torch.equal(_rows_of_others(out, q_lens), _rows_of_others(good, q_lens))
