"""Chunked prefill equals one-shot prefill; decode of the last t tokens equals the prefill's
tail. Run on the reference and on the kernels."""

import torch
from hypothesis import given, note, settings
from hypothesis import strategies as st

from harness.impls import KERNEL_PROBLEMS, KERNEL_VARIANTS, kernel_examples
from harness.impls import run_both_branches as run
from harness.strategies import problems
from harness.tolerance import compare_topk, lse_error, output_error
from msa_sgl import reference


def check_rows(problem, full, part_problem, part, ranges):
    """Rows ranges[b] of request b in the one-shot run vs the same queries in part_problem."""
    for b, (s, e) in enumerate(ranges):
        lo, hi = problem.row_offsets[b] + s, problem.row_offsets[b] + e
        plo, phi = part_problem.row_offsets[b], part_problem.row_offsets[b + 1]
        args = part_problem.subset([b]).index_args()
        got = tuple(x[plo:phi] for x in part)
        compare_topk(full[0][lo:hi], got[0], reference.index_scores(**args), args["q_idx"], args["k_idx_cache"],
                     problem.config)
        if torch.equal(full[0][lo:hi], got[0]):
            dtype = got[1].dtype
            output_error(full[1][lo:hi], got[1].to(torch.float64), dtype, what="one-shot rows vs chunk")
            lse_error(full[2][lo:hi], got[2].to(torch.float64), dtype)


def check_chunked(impl, problem, data):
    note(problem.describe())
    full = run(impl, problem)
    cuts = []  # every request's queries cut into up to 4 chunks; chunk c of all requests = one call
    for q_len in problem.q_lens:
        n_cuts = data.draw(st.integers(0, min(3, max(q_len - 1, 0))), label="cuts")
        inner = data.draw(st.sets(st.integers(1, q_len - 1), min_size=n_cuts, max_size=n_cuts)) if n_cuts else set()
        cuts.append([0] + sorted(inner) + [q_len])
    for c in range(max(len(x) - 1 for x in cuts)):
        ranges = [(x[c], x[c + 1]) if c + 1 < len(x) else (x[-1], x[-1]) for x in cuts]
        chunk = problem.with_rows(ranges)
        check_rows(problem, full, chunk, run(impl, chunk), ranges)


def check_decode_tail(impl, problem, t):
    """Decode (multi-token when t > 1) of each request's last t queries."""
    note(problem.describe())
    full = run(impl, problem)
    ranges = [(max(0, q - t), q) for q in problem.q_lens]
    tail = problem.with_rows(ranges)
    check_rows(problem, full, tail, run(impl, tail), ranges)


@given(problem=problems(max_batch=3), data=st.data())
def test_reference_chunked_prefill_equals_one_shot(problem, data):
    check_chunked(reference, problem, data)


@settings(max_examples=kernel_examples())
@given(kernels=st.sampled_from(KERNEL_VARIANTS), problem=problems(**KERNEL_PROBLEMS), data=st.data())
def test_kernel_chunked_prefill_equals_one_shot(kernels, problem, data):
    check_chunked(kernels, problem, data)


@given(problem=problems(max_batch=3), t=st.integers(1, 16))
def test_reference_decode_tail_equals_prefill_tail(problem, t):
    check_decode_tail(reference, problem, t)


@settings(max_examples=kernel_examples())
@given(kernels=st.sampled_from(KERNEL_VARIANTS), problem=problems(**KERNEL_PROBLEMS), t=st.integers(1, 16))
def test_kernel_decode_tail_equals_prefill_tail(kernels, problem, t):
    check_decode_tail(kernels, problem, t)
