"""MSADecodeWrapper (plan once, run per layer) against the float64 reference and the plain API.

One wrapper serves two steps in a row, the way a captured CUDA graph would: built once with
room to spare, planned for step A and run, then planned for step B (new lengths, page table
and data; same batch and query count) and run again into the same buffers.
"""

import dataclasses

import torch
from hypothesis import given, note, settings
from hypothesis import strategies as st

from harness.impls import KERNEL_DEVICE, KERNEL_PROBLEMS, KERNELS, KernelImpl, kernel_examples
from harness.problems import DTYPES, Problem
from harness.strategies import DRAW_COUNT, problem_specs
from harness.tolerance import compare_topk, lse_error, output_error
from msa_sgl import MSADecodeWrapper, reference
from msa_sgl import decode as msa_decode


@st.composite
def _two_steps(draw):
    """Two decode problems with the same batch, query counts and shapes (step A, step B)."""
    spec = draw(problem_specs(decode_only=True, **KERNEL_PROBLEMS))
    seq_b = tuple(draw(st.integers(q, max(q, s + 40))) for q, s in zip(spec.q_lens, spec.seq_lens))
    spec_b = dataclasses.replace(spec, seq_lens=seq_b, seed=spec.seed + 1, layout_seed=spec.layout_seed + 1)
    DRAW_COUNT["problems"] += 2
    return Problem.from_spec(spec), Problem.from_spec(spec_b), draw(st.integers(0, 3)), draw(st.integers(0, 2))


def _check_step(wrapper, problem):
    args = {k: (v.to(KERNEL_DEVICE) if isinstance(v, torch.Tensor) else v) for k, v in problem.msa_args().items()}
    total_q = args["q"].shape[0]
    wrapper.plan(args["page_table"], args["cu_seqlens_q"], args["seq_lens_k"], total_q=total_q)
    out, lse = wrapper.run(args["q"], args["k_cache"], args["v_cache"], args["q_idx"], args["k_idx_cache"],
                           return_lse=True)
    out, lse, topk = out.cpu(), lse.cpu(), wrapper.topk_idx.cpu()
    # the selection is exact (the same per-block scores, whatever the split): equal to the plain API's
    assert torch.equal(topk, KERNELS.index_topk(**problem.index_args())), "wrapper selection != msa_sgl.index_topk"
    ref_topk = reference.index_topk(**problem.index_args())
    report = compare_topk(topk, ref_topk, reference.index_scores(**problem.index_args()), problem.args()["q_idx"],
                          problem.args()["k_idx_cache"], problem.config)
    out2, lse2 = reference.sparse_attention(**problem.attention_args(topk), return_lse=True)
    note(f"{report}; {output_error(out, out2, out.dtype)}")
    lse_error(lse, lse2, out.dtype)


def _two_steps_match_reference(steps, form, fused=None):
    a, b, spare_batch, spare_pages = steps
    note(f"A: {a.describe()}\nB: {b.describe()}\nfused select: {fused}")
    saved = msa_decode.FUSED_SELECT
    msa_decode.FUSED_SELECT = fused
    try:
        _run_two_steps(a, b, spare_batch, spare_pages, form, fused)
    finally:
        msa_decode.FUSED_SELECT = saved


def _run_two_steps(a, b, spare_batch, spare_pages, form, fused):
    s = a.spec
    width = max(a.args()["page_table"].shape[1], b.args()["page_table"].shape[1]) + spare_pages
    with form.knobs():  # the wrapper sizes its buffers and plans under them
        wrapper = MSADecodeWrapper(
            a.config, num_q_heads=s.num_q_heads, num_kv_heads=s.num_kv_heads, head_dim=s.head_dim,
            index_dim=s.index_dim, max_batch=len(s.q_lens) + spare_batch, max_pages=width,
            max_q_len=max(max(s.q_lens), 1), dtype=DTYPES[s.dtype], device=KERNEL_DEVICE,
        )
        for step in (a, b):
            _check_step(wrapper, step)
            method, used = wrapper.step_plan.method, wrapper.step_plan.fused_select
            if form.main_branch is not None:
                assert method == form.main_branch, (method, form)
            if fused is not None:  # the path under test ran
                assert used == (fused and method == "split"), (used, fused, method)


@settings(max_examples=kernel_examples())
@given(steps=_two_steps())
def test_kernel_decode_wrapper_two_steps_match_reference(steps):
    """The wrapper as it chooses its forms (on the CPU mostly query-outer after the index
    finalize kernel; on the GPU the split form for decode-sized steps)."""
    _two_steps_match_reference(steps, KERNELS)


# The split form forced at every size, its slot kernel merging the index lists itself (no
# finalize kernel) or reading the finalize kernel's selection; 5 index splits, merged 8
# candidates at a time, so a row's lists take several chunks. The interpreter runs one program
# per (token, group, slot), each merging the lists: a fifth of the examples.
@settings(max_examples=max(1, kernel_examples() // 5))
@given(steps=_two_steps(), fused=st.booleans())
def test_kernel_decode_wrapper_split_form_selects_in_slot_kernel(steps, fused):
    _two_steps_match_reference(steps, KernelImpl(main_branch="split", index_splits=5), fused)
