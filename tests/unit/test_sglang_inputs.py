"""SGLang-shaped inputs (flat pools + req_to_token) give the same answers as the page-table form."""

import pytest
import torch
from hypothesis import given, note
from hypothesis import strategies as st

from harness.sglang_inputs import msa_args_from_sglang, to_sglang
from harness.strategies import problems
from msa_sgl import paged_view, reference


@given(problem=problems(), seed=st.integers(0, 1000))
def test_sglang_layout_roundtrip(problem, seed):
    note(problem.describe())
    batch = to_sglang(problem, seed=seed)
    args = msa_args_from_sglang(batch)
    # the pools are viewed, not copied
    assert args["k_cache"].data_ptr() == batch.k_buffer.data_ptr()
    # new tokens' slots hold this call's keys, in order
    if batch.out_cache_loc.numel():
        ks = batch.k_buffer[batch.out_cache_loc]
        want = torch.cat([r.k[r.seq_len - r.q_len :] for r in problem.requests])
        assert torch.equal(ks, want)
    out, lse = reference.msa_attention(**args, return_lse=True)
    ref_out, ref_lse = reference.msa_attention(**problem.msa_args(), return_lse=True)
    assert torch.equal(out, ref_out) and torch.equal(lse, ref_lse)


def test_paged_view_errors():
    with pytest.raises(ValueError, match=r"^buffer: expected the number of slots shape\[0\] to be a multiple of block_size = 16, got 20"):
        paged_view(torch.zeros(20, 2, 4), 16)
    with pytest.raises(ValueError, match=r"^buffer: expected a contiguous slot pool"):
        paged_view(torch.zeros(4, 32).t(), 16)
