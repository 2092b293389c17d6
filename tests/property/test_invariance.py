"""What must not change the answer: where pages live, what unowned memory holds, and which
other requests share the batch."""

import pytest
import torch
from hypothesis import given, note
from hypothesis import strategies as st

from harness.impls import IMPLEMENTATIONS
from harness.problems import POISONS
from harness.strategies import problems
from harness.tolerance import BOUNDS, compare_topk, output_error
from msa_sgl import reference

IMPL_NAMES = sorted(IMPLEMENTATIONS)


def run(impl, problem):
    args = problem.msa_args()
    topk_idx = impl.index_topk(**problem.index_args())
    out, lse = impl.sparse_attention(**problem.attention_args(topk_idx), return_lse=True)
    return topk_idx, out, lse


@pytest.mark.parametrize("impl_name", IMPL_NAMES)
@given(problem=problems(), layout_seed=st.integers(0, 2**31 - 1))
def test_page_permutation_changes_nothing(impl_name, problem, layout_seed):
    """Same logical data, another physical page shuffle: bitwise the same results."""
    note(problem.describe())
    impl = IMPLEMENTATIONS[impl_name]
    other = problem.relaid(layout_seed)
    a, b = run(impl, problem), run(impl, other)
    assert torch.equal(a[0], b[0]), "topk_idx changed with the page layout"
    assert torch.equal(a[1], b[1]), "out changed with the page layout"
    assert torch.equal(a[2], b[2]), "lse changed with the page layout"


@pytest.mark.parametrize("impl_name", IMPL_NAMES)
@given(problem=problems(), poison=st.sampled_from(tuple(POISONS)))
def test_poison_is_never_read(impl_name, problem, poison):
    """Unowned pages, last-page tails and unused table entries hold NaN or +-3e4: other poison,
    bitwise the same results, and never a non-finite output."""
    note(problem.describe())
    impl = IMPLEMENTATIONS[impl_name]
    a, b = run(impl, problem), run(impl, problem.repoisoned(poison))
    assert torch.isfinite(a[1]).all(), "non-finite output: poison was read"
    for x, y, what in zip(a, b, ("topk_idx", "out", "lse")):
        assert torch.equal(x, y), f"{what} depends on memory the request does not own"


@pytest.mark.parametrize("impl_name", IMPL_NAMES)
@given(problem=problems(max_batch=4), data=st.data())
def test_request_independent_of_batch(impl_name, problem, data):
    """A request run alone gives the rows it gets inside the batch."""
    note(problem.describe())
    impl = IMPLEMENTATIONS[impl_name]
    r = data.draw(st.integers(0, len(problem.requests) - 1), label="request")
    alone = problem.subset([r])
    topk_b, out_b, _ = run(impl, problem)
    topk_a, out_a, _ = run(impl, alone)
    lo, hi = problem.row_offsets[r], problem.row_offsets[r + 1]
    args = alone.index_args()
    compare_topk(topk_b[lo:hi], topk_a, reference.index_scores(**args), args["q_idx"], args["k_idx_cache"], problem.config)
    if torch.equal(topk_b[lo:hi], topk_a):
        output_error(out_b[lo:hi], out_a.to(torch.float64), out_a.dtype, what="batched rows vs alone")
