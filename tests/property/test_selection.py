"""The selection contract (MSA.md section 3): the reference and the kernels."""

import torch
from hypothesis import given, note, settings
from hypothesis import strategies as st

from harness.impls import KERNEL_PROBLEMS, KERNEL_VARIANTS, kernel_examples
from harness.strategies import problems
from harness.tolerance import check_selection_contract, compare_topk
from msa_sgl import reference
from msa_sgl.reference import query_positions


def check_selection_is_optimal(topk_idx, scores, pos, config):
    """Independent of select_blocks: every freely chosen block scores at least as high as every
    block left out, and where they are equal the chosen one has the lower id."""
    B = config.block_size
    for t in range(topk_idx.shape[0]):
        p = int(pos[t]) // B
        if p + 1 <= config.topk:
            continue
        forced = set(range(config.num_init_blocks)) | set(range(p - config.num_local_blocks + 1, p + 1))
        for g in range(topk_idx.shape[1]):
            row = topk_idx[t, g]
            chosen = set(row[row >= 0].tolist()) - forced
            left_out = set(range(p + 1)) - forced - chosen
            for c in chosen:
                for o in left_out:
                    sc, so = float(scores[t, g, c]), float(scores[t, g, o])
                    assert sc > so or (sc == so and c < o), (
                        f"row {t} group {g}: chose block {c} (score {sc}) over block {o} (score {so})"
                    )


@given(problem=problems())
def test_reference_selection_contract_and_optimality(problem):
    note(problem.describe())
    args = problem.index_args()
    topk_idx = reference.index_topk(**args)
    assert topk_idx.dtype == torch.int32
    check_selection_contract(topk_idx, args["cu_seqlens_q"], args["seq_lens_k"], problem.config)
    _, pos = query_positions(args["cu_seqlens_q"], args["seq_lens_k"])
    check_selection_is_optimal(topk_idx, reference.index_scores(**args), pos, problem.config)


@settings(max_examples=kernel_examples())
@given(kernels=st.sampled_from(KERNEL_VARIANTS), problem=problems(**KERNEL_PROBLEMS))
def test_kernel_selection_matches_reference(kernels, problem):
    note(problem.describe())
    args = problem.index_args()
    topk_idx = kernels.index_topk(**args)
    assert topk_idx.dtype == torch.int32
    check_selection_contract(topk_idx, args["cu_seqlens_q"], args["seq_lens_k"], problem.config)
    ref = reference.index_topk(**args)
    report = compare_topk(topk_idx, ref, reference.index_scores(**args), args["q_idx"], args["k_idx_cache"], problem.config)
    note(f"tie substitutions: {report}")


@given(problem=problems())
def test_scores_mask_the_future(problem):
    """Reference scores: -inf exactly for blocks past the query's own block and past its pages;
    finite (poison never read) for blocks 0..p."""
    args = problem.index_args()
    scores = reference.index_scores(**args)
    _, pos = query_positions(args["cu_seqlens_q"], args["seq_lens_k"])
    p = pos // problem.config.block_size
    cols = torch.arange(scores.shape[2])
    visible = cols[None, :] <= p[:, None]  # [total_q, max_pages]
    for g in range(scores.shape[1]):
        assert torch.isfinite(scores[:, g][visible]).all()
        assert torch.isneginf(scores[:, g][~visible]).all()
