"""What must not change the answer: where pages live, what unowned memory holds, and which
other requests share the batch. Run on the reference and on the kernels."""

import torch
from hypothesis import given, note, settings
from hypothesis import strategies as st

from harness.impls import KERNEL_PROBLEMS, KERNEL_VARIANTS, kernel_examples
from harness.impls import run_both_branches as run
from harness.problems import POISONS
from harness.strategies import problems
from harness.tolerance import compare_topk, output_error
from msa_sgl import reference

SEEDS = st.integers(0, 2**31 - 1)


def check_page_permutation(impl, problem, layout_seed):
    """Same logical data, another physical page shuffle: bitwise the same results."""
    note(problem.describe())
    a, b = run(impl, problem), run(impl, problem.relaid(layout_seed))
    for x, y, what in zip(a, b, ("topk_idx", "out", "lse")):
        assert torch.equal(x, y), f"{what} changed with the page layout"


def check_poison(impl, problem, poison):
    """Unowned pages, last-page tails and unused table entries hold NaN or +-3e4: other poison,
    bitwise the same results, and never a non-finite output."""
    note(problem.describe())
    a, b = run(impl, problem), run(impl, problem.repoisoned(poison))
    assert torch.isfinite(a[1]).all(), "non-finite output: poison was read"
    for x, y, what in zip(a, b, ("topk_idx", "out", "lse")):
        assert torch.equal(x, y), f"{what} depends on memory the request does not own"


def check_batch_independence(impl, problem, r):
    """A request run alone gives the rows it gets inside the batch."""
    note(problem.describe())
    r = r % len(problem.requests)
    alone = problem.subset([r])
    topk_b, out_b, _ = run(impl, problem)
    topk_a, out_a, _ = run(impl, alone)
    lo, hi = problem.row_offsets[r], problem.row_offsets[r + 1]
    args = alone.index_args()
    compare_topk(topk_b[lo:hi], topk_a, reference.index_scores(**args), args["q_idx"], args["k_idx_cache"], problem.config)
    if torch.equal(topk_b[lo:hi], topk_a):
        output_error(out_b[lo:hi], out_a.to(torch.float64), out_a.dtype, what="batched rows vs alone")


@given(problem=problems(), layout_seed=SEEDS)
def test_reference_page_permutation_changes_nothing(problem, layout_seed):
    check_page_permutation(reference, problem, layout_seed)


@settings(max_examples=kernel_examples())
@given(kernels=st.sampled_from(KERNEL_VARIANTS), problem=problems(**KERNEL_PROBLEMS), layout_seed=SEEDS)
def test_kernel_page_permutation_changes_nothing(kernels, problem, layout_seed):
    check_page_permutation(kernels, problem, layout_seed)


@given(problem=problems(), poison=st.sampled_from(tuple(POISONS)))
def test_reference_poison_is_never_read(problem, poison):
    check_poison(reference, problem, poison)


@settings(max_examples=kernel_examples())
@given(kernels=st.sampled_from(KERNEL_VARIANTS), problem=problems(**KERNEL_PROBLEMS), poison=st.sampled_from(tuple(POISONS)))
def test_kernel_poison_is_never_read(kernels, problem, poison):
    check_poison(kernels, problem, poison)


@given(problem=problems(), r=st.integers(0, 3))
def test_reference_request_independent_of_batch(problem, r):
    check_batch_independence(reference, problem, r)


@settings(max_examples=kernel_examples())
@given(kernels=st.sampled_from(KERNEL_VARIANTS), problem=problems(**KERNEL_PROBLEMS), r=st.integers(0, 3))
def test_kernel_request_independent_of_batch(kernels, problem, r):
    check_batch_independence(kernels, problem, r)
