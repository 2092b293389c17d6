"""The harness's checks must fail on wrong answers (a check that cannot fail is a defect)."""

import math

import pytest
import torch

from harness.problems import Problem, ProblemSpec
from harness.tolerance import check_selection_contract, compare_topk, lse_error, output_error
from msa_sgl import MSAConfig, reference


def test_output_error_bounds():
    ref = torch.randn(64, 4, 32, dtype=torch.float64)
    output_error(ref.half(), ref, torch.float16)  # one fp16 rounding passes
    output_error(ref.bfloat16(), ref, torch.bfloat16)
    with pytest.raises(AssertionError, match="rel_l2"):
        output_error((ref * 1.01).half(), ref, torch.float16)
    with pytest.raises(AssertionError, match="rel_l2"):
        output_error((ref + 1e-3 * torch.randn_like(ref)).float(), ref, torch.float32)
    bad = ref.clone().half()
    bad[3, 1, 7] = float("nan")
    with pytest.raises(AssertionError, match="non-finite"):
        output_error(bad, ref, torch.float16)
    spike = ref.clone()
    spike[0, 0, 0] += 0.5  # one wrong element: small in L2, caught by max-abs
    with pytest.raises(AssertionError, match="max_abs"):
        output_error(spike.half(), ref, torch.float16)


def test_lse_error_bounds():
    ref = torch.tensor([[1.0, -math.inf], [2.0, 3.0]], dtype=torch.float64)
    lse_error(ref.float(), ref, torch.float16)
    with pytest.raises(AssertionError, match="-inf rows"):
        lse_error(torch.tensor([[1.0, 0.0], [2.0, 3.0]]), ref, torch.float16)
    with pytest.raises(AssertionError, match="NaN"):
        lse_error(torch.tensor([[float("nan"), -math.inf], [2.0, 3.0]]), ref, torch.float16)
    with pytest.raises(AssertionError, match="max abs error"):
        lse_error(torch.tensor([[1.01, -math.inf], [2.0, 3.0]]), ref, torch.float16)


def _meta(q_len, seq_len):
    return torch.tensor([0, q_len], dtype=torch.int32), torch.tensor([seq_len], dtype=torch.int32)


@pytest.mark.parametrize(
    "row,message",
    [
        ([0, 3, 2, 4], "ascending"),
        ([0, 1, 2, -1], "expected 4 valid ids"),
        ([0, 1, -1, 4], "expected 4 valid ids"),
        ([1, 2, 3, 5], "past the query's own block"),
        ([0, 1, 2, 3], "local block p must be the last"),
        ([0, 0, 2, 4], "ascending"),
    ],
    ids=["descending", "short", "hole", "future", "no_local", "duplicate"],
)
def test_selection_contract_rejects(row, message):
    cfg = MSAConfig(block_size=16, topk=4)
    cu, lens = _meta(1, 16 * 4 + 5)  # query in block 4
    with pytest.raises(AssertionError, match=message):
        check_selection_contract(torch.tensor([[row]], dtype=torch.int32), cu, lens, cfg)
    check_selection_contract(torch.tensor([[[0, 1, 2, 4]]], dtype=torch.int32), cu, lens, cfg)


def test_selection_contract_requires_init_blocks():
    cfg = MSAConfig(block_size=16, topk=3, num_init_blocks=1)
    cu, lens = _meta(1, 16 * 5)
    with pytest.raises(AssertionError, match=r"forced blocks \[0\] missing"):
        check_selection_contract(torch.tensor([[[2, 3, 4]]], dtype=torch.int32), cu, lens, cfg)


def test_compare_topk_accepts_ties_only():
    # one query in block 4 (k=3): scores 5, 7, 7, 1, (local): reference picks {1, 2, 4}
    spec = ProblemSpec(q_lens=(1,), seq_lens=(80,), block_size=16, topk=3, num_kv_heads=1, group_size=1,
                       head_dim=16, index_dim=16)
    p = Problem.from_spec(spec)
    args = p.index_args()
    cfg = p.config
    scores = torch.tensor([[[5.0, 7.0, 7.0, 1.0, 0.0]]], dtype=torch.float64)
    ref = torch.tensor([[[1, 2, 4]]], dtype=torch.int32)
    compare_topk(ref, ref, scores, args["q_idx"], args["k_idx_cache"], cfg)
    report = compare_topk(
        torch.tensor([[[1, 2, 4]]], dtype=torch.int32), torch.tensor([[[0, 2, 4]]], dtype=torch.int32),
        torch.tensor([[[7.0, 7.0, 8.0, 1.0, 0.0]]], dtype=torch.float64), args["q_idx"], args["k_idx_cache"], cfg,
    )
    assert report.differing_rows == 1 and report.tie_substitutions == 1
    with pytest.raises(AssertionError, match="block 0 scores 5.0"):
        compare_topk(torch.tensor([[[0, 2, 4]]], dtype=torch.int32), ref, scores, args["q_idx"], args["k_idx_cache"], cfg)
    # dropping the forced local block for a block tied with the k-th best is still wrong
    tie_scores = torch.tensor([[[7.0, 3.0, 3.0, 3.0, 0.0]]], dtype=torch.float64)
    with pytest.raises(AssertionError, match="block 4"):
        compare_topk(
            torch.tensor([[[0, 1, 3]]], dtype=torch.int32), torch.tensor([[[0, 1, 4]]], dtype=torch.int32),
            tie_scores, args["q_idx"], args["k_idx_cache"], cfg,
        )


def test_problem_poisons_what_requests_do_not_own():
    spec = ProblemSpec(q_lens=(2, 1), seq_lens=(20, 3), block_size=16, extra_pages=2, poison="nan")
    a = Problem.from_spec(spec).args()
    owned = a["page_table"][0, :2].tolist() + a["page_table"][1, :1].tolist()
    n_pages = a["k_cache"].shape[0]
    assert n_pages == 5
    for page in range(n_pages):
        filled = ~torch.isnan(a["k_cache"][page, :, 0, 0])
        if page not in owned:
            assert not filled.any()
    tail_page = int(a["page_table"][0, 1])
    assert int((~torch.isnan(a["k_idx_cache"][tail_page, :, 0])).sum()) == 4  # 20 - 16 keys, rest poison
    assert reference.msa_attention(**Problem.from_spec(spec).msa_args()).isfinite().all()
