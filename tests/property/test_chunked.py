"""Chunked prefill equals one-shot prefill; decode of the last t tokens equals the prefill's tail."""

import pytest
import torch
from hypothesis import given, note
from hypothesis import strategies as st

from harness.impls import IMPLEMENTATIONS
from harness.strategies import problems
from harness.tolerance import compare_topk, output_error, lse_error
from msa_sgl import reference

IMPL_NAMES = sorted(IMPLEMENTATIONS)


def run(impl, problem):
    topk_idx = impl.index_topk(**problem.index_args())
    out, lse = impl.sparse_attention(**problem.attention_args(topk_idx), return_lse=True)
    return topk_idx, out, lse


def check_rows_equal(problem, full, part, lo, hi, part_problem):
    """Rows lo:hi of the one-shot run vs the run of part_problem (same queries, fewer keys)."""
    args = part_problem.index_args()
    compare_topk(full[0][lo:hi], part[0], reference.index_scores(**args), args["q_idx"], args["k_idx_cache"], problem.config)
    if torch.equal(full[0][lo:hi], part[0]):
        dtype = part[1].dtype
        output_error(full[1][lo:hi], part[1].to(torch.float64), dtype, what="one-shot rows vs chunk")
        lse_error(full[2][lo:hi], part[2].to(torch.float64), dtype)


@pytest.mark.parametrize("impl_name", IMPL_NAMES)
@given(problem=problems(max_batch=3), data=st.data())
def test_chunked_prefill_equals_one_shot(impl_name, problem, data):
    note(problem.describe())
    impl = IMPLEMENTATIONS[impl_name]
    full = run(impl, problem)
    # cut every request's queries into chunks; chunk c of all requests forms one call
    cuts = []
    for q_len in problem.q_lens:
        n_cuts = data.draw(st.integers(0, min(3, max(q_len - 1, 0))), label="cuts")
        inner = sorted(data.draw(st.sets(st.integers(1, q_len - 1), min_size=n_cuts, max_size=n_cuts))) if n_cuts else []
        cuts.append([0] + inner + [q_len])
    for c in range(max(len(x) - 1 for x in cuts)):
        ranges = [(x[min(c, len(x) - 2)], x[min(c + 1, len(x) - 1)]) if c < len(x) - 1 else (x[-1], x[-1]) for x in cuts]
        chunk = problem.with_rows(ranges)
        part = run(impl, chunk)
        for b, (s, e) in enumerate(ranges):
            lo, hi = problem.row_offsets[b] + s, problem.row_offsets[b] + e
            plo, phi = chunk.row_offsets[b], chunk.row_offsets[b + 1]
            sub = chunk.subset([b])
            check_rows_equal(problem, full, tuple(x[plo:phi] for x in part), lo, hi, sub)


@pytest.mark.parametrize("impl_name", IMPL_NAMES)
@given(problem=problems(max_batch=3), t=st.integers(1, 16))
def test_decode_tail_equals_prefill_tail(impl_name, problem, t):
    """Decode (multi-token when t > 1) of each request's last t queries."""
    note(problem.describe())
    impl = IMPLEMENTATIONS[impl_name]
    full = run(impl, problem)
    ranges = [(max(0, q - t), q) for q in problem.q_lens]
    tail = problem.with_rows(ranges)
    part = run(impl, tail)
    for b, (s, e) in enumerate(ranges):
        lo, hi = problem.row_offsets[b] + s, problem.row_offsets[b] + e
        plo, phi = tail.row_offsets[b], tail.row_offsets[b + 1]
        check_rows_equal(problem, full, tuple(x[plo:phi] for x in part), lo, hi, tail.subset([b]))
