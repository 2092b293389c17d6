"""With topk >= the number of blocks, MSA is dense causal GQA attention."""

import dataclasses

from hypothesis import given, note, settings
from hypothesis import strategies as st

from harness.impls import KERNEL_PROBLEMS, KERNEL_VARIANTS, kernel_examples
from harness.strategies import problems
from harness.tolerance import lse_error, output_error
from msa_sgl import reference


def check_all_blocks_selected_is_dense(impl, problem):
    args = problem.msa_args()
    B = problem.config.block_size
    n_blocks = max((s + B - 1) // B for s in problem.seq_lens)
    if n_blocks > problem.config.topk:  # widen topk so every block is kept
        args["config"] = dataclasses.replace(problem.config, topk=n_blocks)
    note(problem.describe())
    out, lse = impl.msa_attention(**args, return_lse=True)
    dense_out, dense_lse = reference.dense_attention(
        args["q"], args["k_cache"], args["v_cache"], args["page_table"], args["cu_seqlens_q"], args["seq_lens_k"],
        softmax_scale=args["config"].softmax_scale, return_lse=True,
    )
    note(str(output_error(out, dense_out, out.dtype)))
    lse_error(lse, dense_lse, out.dtype)


@given(problem=problems(max_keys=512))
def test_reference_all_blocks_is_dense(problem):
    check_all_blocks_selected_is_dense(reference, problem)


@settings(max_examples=kernel_examples())
@given(kernels=st.sampled_from(KERNEL_VARIANTS), problem=problems(**KERNEL_PROBLEMS))
def test_kernel_all_blocks_is_dense(kernels, problem):
    check_all_blocks_selected_is_dense(kernels, problem)
