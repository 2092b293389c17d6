"""With topk >= the number of blocks, MSA is dense causal GQA attention."""

import pytest
from hypothesis import given, note

from harness.impls import IMPLEMENTATIONS
from harness.strategies import problems
from harness.tolerance import lse_error, output_error
from msa_sgl import MSAConfig, reference


@pytest.mark.parametrize("impl_name", sorted(IMPLEMENTATIONS))
@given(problem=problems(max_keys=512, min_topk=24))
def test_all_blocks_selected_is_dense(impl_name, problem):
    args = problem.msa_args()
    n_blocks = max((s + problem.config.block_size - 1) // problem.config.block_size for s in problem.seq_lens)
    if n_blocks > problem.config.topk:  # widen topk so every block is kept
        cfg = problem.config
        args["config"] = MSAConfig(
            block_size=cfg.block_size, topk=min(64, n_blocks), num_init_blocks=cfg.num_init_blocks,
            num_local_blocks=cfg.num_local_blocks, index_scale=cfg.index_scale, softmax_scale=cfg.softmax_scale,
        )
    note(problem.describe())
    out, lse = IMPLEMENTATIONS[impl_name].msa_attention(**args, return_lse=True)
    dense_out, dense_lse = reference.dense_attention(
        args["q"], args["k_cache"], args["v_cache"], args["page_table"], args["cu_seqlens_q"], args["seq_lens_k"],
        softmax_scale=args["config"].softmax_scale, return_lse=True,
    )
    note(str(output_error(out, dense_out, out.dtype)))
    lse_error(lse, dense_lse, out.dtype)
