"""MSAPrefillWrapper (plan once per batch, run per layer) against msa_sgl.msa_attention: the
same kernels and launch shapes, so bitwise-equal outputs and LSEs, for two "layers" (same
metadata, other data) run after one plan; 8-bit index keys; every-row-dense batches; and the
argument errors of plan() and run(); one wrapper re-planned across batches; a batch without
queries."""

import dataclasses

import pytest
import torch
from hypothesis import given, note, settings
from hypothesis import strategies as st

import msa_sgl
from harness.impls import KERNEL_DEVICE, KERNEL_PROBLEMS, kernel_examples
from harness.problems import DTYPES, Problem, ProblemSpec
from harness.strategies import DRAW_COUNT, problem_specs
from harness.tolerance import output_error
from msa_sgl import MSAPrefillWrapper, reference


@st.composite
def _two_layers(draw):
    spec = draw(problem_specs(**KERNEL_PROBLEMS))
    DRAW_COUNT["problems"] += 2
    return Problem.from_spec(spec), Problem.from_spec(dataclasses.replace(spec, seed=spec.seed + 1))


def _args(problem):
    return {k: (v.to(KERNEL_DEVICE) if isinstance(v, torch.Tensor) else v) for k, v in problem.msa_args().items()}


def _wrapper(problem, **kw):
    s = problem.spec
    return MSAPrefillWrapper(problem.config, num_q_heads=s.num_kv_heads * s.group_size, num_kv_heads=s.num_kv_heads,
                             head_dim=s.head_dim, index_dim=s.index_dim, dtype=DTYPES[s.dtype], device=KERNEL_DEVICE,
                             **kw)


def _layers_match_msa_attention(layers, k_idx=None):
    """Plan on the first layer's metadata, run every layer; each equals msa_attention bitwise."""
    first = _args(layers[0])
    w = _wrapper(layers[0], index_fp8=k_idx is not None)
    w.plan(first["page_table"], first["cu_seqlens_q"], first["seq_lens_k"], total_q=first["q"].shape[0])
    for i, layer in enumerate(layers):
        a = _args(layer)
        extra = {}
        if k_idx is not None:
            a["k_idx_cache"], extra["k_idx_scale"] = k_idx[i]
        got, got_lse = w.run(a["q"], a["k_cache"], a["v_cache"], a["q_idx"], a["k_idx_cache"], return_lse=True,
                             **extra)
        want, want_lse = msa_sgl.msa_attention(**a, return_lse=True, **extra)
        assert torch.equal(got, want), f"layer {i}: out differs from msa_attention's"
        assert torch.equal(got_lse, want_lse), f"layer {i}: lse differs from msa_attention's"
    return got


@settings(max_examples=kernel_examples())
@given(layers=_two_layers())
def test_kernel_prefill_wrapper_layers_equal_msa_attention(layers):
    note(layers[0].describe())
    _layers_match_msa_attention(layers)


def _spec(q_lens, seq_lens, **kw):
    return ProblemSpec(q_lens=q_lens, seq_lens=seq_lens, dtype="float16", **kw)


@pytest.mark.parametrize("q_lens,seq_lens", [((70, 0, 33), (200, 40, 33)), ((5, 9), (9, 9))],
                         ids=["chunked_with_empty_request", "every_row_dense"])
def test_kernel_prefill_wrapper_cases(q_lens, seq_lens):
    layers = [Problem.from_spec(_spec(q_lens, seq_lens, block_size=16, seed=s)) for s in (3, 4)]
    out = _layers_match_msa_attention(layers)
    ref = reference.msa_attention(**layers[-1].msa_args())
    output_error(out.cpu(), ref, torch.float16)


def test_kernel_prefill_wrapper_8bit_index_keys():
    layers = [Problem.from_spec(_spec((40, 25), (300, 25), block_size=16, topk=4, seed=s)) for s in (5, 6)]
    k_idx = []
    for layer in layers:
        a = _args(layer)
        kc = a["k_idx_cache"]
        k8 = torch.empty(kc.shape, dtype=torch.float8_e4m3fn, device=KERNEL_DEVICE)
        scale = torch.empty(kc.shape[:2], dtype=torch.float32, device=KERNEL_DEVICE)
        slots = torch.arange(kc.shape[0] * kc.shape[1], device=KERNEL_DEVICE)
        msa_sgl.quantize_index_keys(kc.reshape(-1, kc.shape[2]), slots, k8, scale)
        k_idx.append((k8, scale))
    _layers_match_msa_attention(layers, k_idx)


def _planned():
    p = Problem.from_spec(_spec((20, 7), (90, 7), block_size=16, seed=9))
    a = _args(p)
    w = _wrapper(p)
    return p, a, w


def test_prefill_wrapper_run_before_plan():
    _, a, w = _planned()
    with pytest.raises(ValueError, match="plan"):
        w.run(a["q"], a["k_cache"], a["v_cache"], a["q_idx"], a["k_idx_cache"])


@pytest.mark.parametrize("bad", ["total_q_type", "total_q_negative", "rows_without_request", "metadata_dtype"])
def test_prefill_wrapper_bad_plan(bad):
    _, a, w = _planned()
    pt, cu, sl, total_q = a["page_table"], a["cu_seqlens_q"], a["seq_lens_k"], a["q"].shape[0]
    if bad == "total_q_type":
        total_q, match = float(total_q), "total_q"
    elif bad == "total_q_negative":
        total_q, match = -1, "total_q"
    elif bad == "rows_without_request":
        pt, cu, sl, match = pt[:0], cu[:1], sl[:0], "page_table"
    else:
        sl, match = sl.to(torch.int64), "seq_lens_k"
    with pytest.raises(ValueError, match=match):
        w.plan(pt, cu, sl, total_q)


@pytest.mark.parametrize("bad", ["rows", "heads", "dtype", "index_keys_fp8"])
def test_prefill_wrapper_bad_run(bad):
    p, a, w = _planned()
    w.plan(a["page_table"], a["cu_seqlens_q"], a["seq_lens_k"], a["q"].shape[0])
    q, k, v, qi, ki, extra = a["q"], a["k_cache"], a["v_cache"], a["q_idx"], a["k_idx_cache"], {}
    if bad == "rows":
        q, qi, match = q[:-1], qi[:-1], r"q\.shape\[0\]: expected 27"
    elif bad == "heads":
        q, match = torch.cat([q, q], 1), r"q\.shape\[1\]"
    elif bad == "dtype":
        q, k, v, qi, ki, match = q.float(), k.float(), v.float(), qi.float(), ki.float(), "dtype"
    else:
        extra["k_idx_scale"], match = torch.ones(ki.shape[:2], device=ki.device), "index_fp8=False"
    with pytest.raises(ValueError, match=match):
        w.run(q, k, v, qi, ki, **extra)


def test_kernel_prefill_wrapper_replanned_for_another_batch():
    # one wrapper, three batches in turn (as the SGLang backend's would see across forwards):
    # each run follows the latest plan, and re-planning the first batch gives its outputs again
    a, b = (Problem.from_spec(_spec(q, s, block_size=16, topk=4, seed=i))
            for i, (q, s) in enumerate([((40, 25), (300, 25)), ((3, 60, 1), (50, 260, 90))], start=11))
    w = _wrapper(a)
    outs = []
    for p in (a, b, a):
        x = _args(p)
        w.plan(x["page_table"], x["cu_seqlens_q"], x["seq_lens_k"], x["q"].shape[0])
        got = w.run(x["q"], x["k_cache"], x["v_cache"], x["q_idx"], x["k_idx_cache"])
        assert torch.equal(got, msa_sgl.msa_attention(**x)), f"batch {p.spec.q_lens}: out differs"
        outs.append(got)
    assert outs[0].shape != outs[1].shape and torch.equal(outs[0], outs[2])


def test_kernel_prefill_wrapper_batch_without_queries():
    p = Problem.from_spec(_spec((0, 0), (40, 7), block_size=16, seed=13))
    x = _args(p)
    w = _wrapper(p)
    w.plan(x["page_table"], x["cu_seqlens_q"], x["seq_lens_k"], 0)
    out, lse = w.run(x["q"], x["k_cache"], x["v_cache"], x["q_idx"], x["k_idx_cache"], return_lse=True)
    assert out.shape == (0, p.spec.num_kv_heads * p.spec.group_size, p.spec.head_dim) and lse.shape == out.shape[:2]


def test_prefill_wrapper_8bit_build_rejects_16bit_index_keys():
    p = Problem.from_spec(_spec((20, 7), (90, 7), block_size=16, seed=9))
    a = _args(p)
    w = _wrapper(p, index_fp8=True)
    w.plan(a["page_table"], a["cu_seqlens_q"], a["seq_lens_k"], a["q"].shape[0])
    scale = torch.ones(a["k_idx_cache"].shape[:2], device=KERNEL_DEVICE)
    with pytest.raises(ValueError, match=r"k_idx_cache: the wrapper was built with index_fp8=True .*got torch.float16"):
        w.run(a["q"], a["k_cache"], a["v_cache"], a["q_idx"], a["k_idx_cache"], k_idx_scale=scale)
    with pytest.raises(ValueError, match="index_fp8=True"):
        w.run(a["q"], a["k_cache"], a["v_cache"], a["q_idx"], a["k_idx_cache"])
