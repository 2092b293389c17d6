"""Misuse raises ValueError naming the argument, what was expected and what came."""

import pytest
import torch

import msa_sgl
from harness.impls import KERNEL_DEVICE
from harness.problems import Problem, ProblemSpec
from msa_sgl import MSAConfig


def _on_device(x):
    return x.to(KERNEL_DEVICE) if isinstance(x, torch.Tensor) and x.device.type == "cpu" else x


def base():
    """Valid arguments on the kernels' device (CUDA where there is one, else the CPU)."""
    spec = ProblemSpec(q_lens=(3, 1), seq_lens=(20, 33), block_size=16, topk=2, num_kv_heads=2, group_size=2,
                       head_dim=16, index_dim=16, dtype="float16")
    p = Problem.from_spec(spec)
    return {k: _on_device(v) for k, v in p.msa_args().items()}


def topk_for(a):
    return torch.zeros(a["q"].shape[0], a["k_cache"].shape[2], a["config"].topk, dtype=torch.int32,
                       device=a["q"].device)


def _with(a, changes):
    """The base arguments with the misuse applied; replacement tensors join the base's device
    unless the case is about devices (the meta device)."""
    a.update({k: _on_device(v) for k, v in changes.items()})
    return a


def call_msa(**changes):
    return msa_sgl.msa_attention(**_with(base(), changes))


def call_sparse(**changes):
    a = base()
    a.pop("q_idx"), a.pop("k_idx_cache")
    a["topk_idx"] = topk_for(a)
    return msa_sgl.sparse_attention(**_with(a, changes))


def call_index(**changes):
    a = base()
    for k in ("q", "k_cache", "v_cache"):
        a.pop(k)
    return msa_sgl.index_topk(**_with(a, changes))


B = base()
CASES = [
    # (id, call, changes, message regex)
    ("q_rank", call_msa, {"q": B["q"].flatten(1)}, r"^q: expected a rank-3 tensor, got rank 2"),
    ("q_dtype_int", call_msa, {"q": B["q"].to(torch.int32)}, r"^q: expected dtype float16 or bfloat16 or float32, got int32"),
    ("k_cache_dtype_mismatch", call_msa, {"k_cache": B["k_cache"].float()}, r"^k_cache: expected dtype float16 \(the dtype of q\), got float32"),
    ("v_cache_shape", call_msa, {"v_cache": B["v_cache"][:, :, :1].contiguous()}, r"^v_cache: expected shape \(.*\) \(the shape of k_cache\), got"),
    ("heads_not_multiple", call_msa, {"q": torch.randn(4, 3, 16).half()}, r"^q: expected the number of query heads shape\[1\] to be a multiple of the KV heads k_cache.shape\[2\] = 2, got 3"),
    ("head_dim_mismatch", call_msa, {"q": torch.randn(4, 4, 32).half()}, r"^k_cache: expected head dim shape\[3\] == q.shape\[2\] = 32, got 16"),
    ("q_idx_heads", call_msa, {"q_idx": torch.randn(4, 1, 16).half()}, r"^q_idx: expected one index query head per KV group, shape\[1\] == k_cache.shape\[2\] = 2, got 1"),
    ("q_idx_tokens", call_msa, {"q_idx": torch.randn(5, 2, 16).half()}, r"^q_idx: expected 4 tokens in shape\[0\] \(q.shape\[0\]\), got 5"),
    ("index_dim_mismatch", call_msa, {"k_idx_cache": B["k_idx_cache"][..., :8].contiguous()}, r"^k_idx_cache: expected index head dim shape\[2\] == q_idx.shape\[2\] = 16, got 8"),
    ("index_dtype_mismatch", call_msa, {"k_idx_cache": B["k_idx_cache"].float()}, r"^k_idx_cache: expected dtype float16 \(the dtype of q_idx\), got float32"),
    ("index_pages_mismatch", call_msa, {"k_idx_cache": B["k_idx_cache"][:-1].contiguous()}, r"^k_idx_cache: expected \d+ pages in shape\[0\] \(k_cache.shape\[0\]"),
    ("block_size_mismatch", call_msa, {"config": MSAConfig(block_size=32, topk=2)}, r"^k_cache: expected page size shape\[1\] == config.block_size = 32, got 16"),
    ("k_cache_noncontiguous", call_msa, {"k_cache": B["k_cache"].transpose(1, 2).contiguous().transpose(1, 2)}, r"^k_cache: expected a contiguous tensor"),
    ("q_inner_stride", call_msa, {"q": B["q"].transpose(1, 2).contiguous().transpose(1, 2)}, r"^q: expected the last dimension contiguous \(stride 1\)"),
    ("page_table_dtype", call_msa, {"page_table": B["page_table"].long()}, r"^page_table: expected dtype int32, got int64"),
    ("page_table_rank", call_msa, {"page_table": B["page_table"].flatten()}, r"^page_table: expected a rank-2 tensor, got rank 1"),
    ("cu_seqlens_len", call_msa, {"cu_seqlens_q": B["cu_seqlens_q"][:-1]}, r"^cu_seqlens_q: expected shape \(3,\) \(\[batch \+ 1\], batch = page_table.shape\[0\]\), got \(2,\)"),
    ("seq_lens_len", call_msa, {"seq_lens_k": torch.tensor([20, 33, 1], dtype=torch.int32)}, r"^seq_lens_k: expected shape \(2,\) \(\[batch\], batch = page_table.shape\[0\]\), got \(3,\)"),
    ("seq_lens_dtype", call_msa, {"seq_lens_k": B["seq_lens_k"].long()}, r"^seq_lens_k: expected dtype int32, got int64"),
    ("not_a_tensor", call_msa, {"q": [[1.0]]}, r"^q: expected a torch.Tensor, got list"),
    ("config_type", call_msa, {"config": {"block_size": 16}}, r"^config: expected msa_sgl.MSAConfig, got dict"),
    ("topk_idx_width", call_sparse, {"topk_idx": torch.zeros(4, 2, 3, dtype=torch.int32)}, r"^topk_idx: expected shape \(4, 2, 2\) \(\[total_q, Hkv, config.topk\]\), got \(4, 2, 3\)"),
    ("topk_idx_dtype", call_sparse, {"topk_idx": torch.zeros(4, 2, 2, dtype=torch.int64)}, r"^topk_idx: expected dtype int32, got int64"),
    ("index_q_idx_rank", call_index, {"q_idx": torch.randn(4, 16).half()}, r"^q_idx: expected a rank-3 tensor, got rank 2"),
    ("kernel_head_dim", call_sparse, {"q": torch.randn(4, 4, 48).half(), "k_cache": torch.randn(6, 16, 2, 48).half(),
                                      "v_cache": torch.randn(6, 16, 2, 48).half()},
     r"^q.shape\[2\]: expected a head dim in \(16, 32, 64, 128\) for the kernels, got 48"),
    ("kernel_index_dim", call_index, {"q_idx": torch.randn(4, 2, 24).half(), "k_idx_cache": torch.randn(6, 16, 24).half()},
     r"^q_idx.shape\[2\]: expected a head dim in \(16, 32, 64, 128\) for the kernels, got 24"),
    ("device_mismatch", call_index, {"q_idx": B["q_idx"].to("meta")},
     r"^k_idx_cache: expected device meta \(the device of q_idx\), got (cpu|cuda)"),
    ("index_k_idx_cache_rank", call_index, {"k_idx_cache": B["k_idx_cache"][:, :, None]}, r"^k_idx_cache: expected a rank-3 tensor, got rank 4"),
    ("rows_without_requests", call_msa, {"page_table": B["page_table"][:0], "cu_seqlens_q": B["cu_seqlens_q"][:1],
                                         "seq_lens_k": B["seq_lens_k"][:0]},
     r"^page_table: expected at least one request \(shape\[0\] >= 1\) for 4 query rows, got shape \(0, \d+\)"),
    ("index_rows_without_requests", call_index, {"page_table": B["page_table"][:0], "cu_seqlens_q": B["cu_seqlens_q"][:1],
                                                 "seq_lens_k": B["seq_lens_k"][:0]},
     r"^page_table: expected at least one request \(shape\[0\] >= 1\) for 4 query rows"),
]


@pytest.mark.parametrize("call,changes,pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_raises_value_error(call, changes, pattern):
    with pytest.raises(ValueError, match=pattern):
        call(**changes)


def test_good_input_passes():
    """The base arguments the misuse cases start from are valid."""
    assert call_msa().shape == (4, 4, 16)
    assert call_sparse().shape == (4, 4, 16)
    assert call_index().shape == (4, 2, 2)


CONFIG_CASES = [
    ("block_size_not_pow2", dict(block_size=48), r"^MSAConfig.block_size: expected a power of two in 16..128"),
    ("block_size_too_big", dict(block_size=256), r"^MSAConfig.block_size: expected a power of two in 16..128 .*got 256"),
    ("topk_zero", dict(topk=0), r"^MSAConfig.topk: expected 1 <= topk <= 64, got 0"),
    ("topk_too_big", dict(topk=65), r"^MSAConfig.topk: expected 1 <= topk <= 64, got 65"),
    ("no_local_block", dict(num_local_blocks=0), r"^MSAConfig.num_local_blocks: expected >= 1, got 0"),
    ("negative_init", dict(num_init_blocks=-1), r"^MSAConfig.num_init_blocks: expected >= 0, got -1"),
    ("forced_exceed_topk", dict(topk=2, num_init_blocks=2, num_local_blocks=1), r"^MSAConfig: expected num_init_blocks \+ num_local_blocks <= topk, got 2 \+ 1 > 2"),
    ("float_topk", dict(topk=16.0), r"^MSAConfig.topk: expected an int, got 16.0"),
    ("scale_negative", dict(softmax_scale=-1.0), r"^MSAConfig.softmax_scale: expected a positive finite float or None, got -1.0"),
    ("scale_nan", dict(index_scale=float("nan")), r"^MSAConfig.index_scale: expected a positive finite float or None, got nan"),
]


@pytest.mark.parametrize("kwargs,pattern", [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES])
def test_bad_config_raises_value_error(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        MSAConfig(**kwargs)


VALUE_CASES = [
    ("cu_seqlens_start", {"cu_seqlens_q": torch.tensor([1, 3, 4], dtype=torch.int32)}, r"^cu_seqlens_q: expected cu_seqlens_q\[0\] == 0, got 1"),
    ("cu_seqlens_total", {"cu_seqlens_q": torch.tensor([0, 3, 5], dtype=torch.int32)}, r"^cu_seqlens_q: expected cu_seqlens_q\[-1\] == total_q = 4, got 5"),
    ("q_len_exceeds_keys", {"seq_lens_k": torch.tensor([2, 33], dtype=torch.int32)}, r"^seq_lens_k: expected q_len <= seq_len_k <= max_pages \* block_size = \d+ for request 0, got q_len 3, seq_len_k 2"),
    ("keys_exceed_table", {"seq_lens_k": torch.tensor([20, 999], dtype=torch.int32)}, r"^seq_lens_k: expected q_len <= seq_len_k <= max_pages \* block_size"),
    ("page_id_out_of_range", {"page_table": torch.full((2, 4), 99, dtype=torch.int32)}, r"^page_table: expected page ids in \[0, \d+\) for the 2 pages of request 0, got min 99 max 99"),
]


@pytest.mark.parametrize("changes,pattern", [c[1:] for c in VALUE_CASES], ids=[c[0] for c in VALUE_CASES])
def test_bad_metadata_values(changes, pattern):
    """Device values are checked by validate_metadata (and so by the reference), not the kernels."""
    a = _with(base(), changes)
    with pytest.raises(ValueError, match=pattern):
        msa_sgl.validate_metadata(
            a["page_table"], a["cu_seqlens_q"], a["seq_lens_k"],
            total_q=a["q"].shape[0], num_pages=a["k_cache"].shape[0], block_size=16,
        )
    with pytest.raises(ValueError, match=pattern):
        msa_sgl.reference.msa_attention(**a)


def test_cpu_tensors_without_interpreter_raise():
    """No silent fallback: CPU tensors in a process whose kernels are compiled for the GPU."""
    import os
    import subprocess
    import sys

    code = (
        "import torch, msa_sgl\n"
        "from harness.problems import Problem, ProblemSpec\n"
        "p = Problem.from_spec(ProblemSpec(q_lens=(1,), seq_lens=(20,), block_size=16, topk=2, head_dim=16, index_dim=16))\n"
        "try:\n"
        "    msa_sgl.msa_attention(**p.msa_args())\n"
        "except ValueError as e:\n"
        "    print('ValueError:', e)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert "ValueError: q: expected a CUDA tensor for msa_sgl's kernels, got device cpu (set TRITON_INTERPRET=1" in res.stdout, res.stdout + res.stderr


def _wrapper(**changes):
    a = base()
    kw = dict(num_q_heads=4, num_kv_heads=2, head_dim=16, index_dim=16, max_batch=2, max_pages=4, max_q_len=4,
              dtype=torch.float16, device=KERNEL_DEVICE)
    kw.update(changes)
    return msa_sgl.MSADecodeWrapper(a["config"], **kw), a


def _plan(w, a, **changes):
    kw = dict(page_table=a["page_table"], cu_seqlens_q=a["cu_seqlens_q"], seq_lens_k=a["seq_lens_k"], total_q=4)
    kw.update({k: _on_device(v) for k, v in changes.items()})
    w.plan(**kw)


def _run(w, a, **changes):
    kw = {k: a[k] for k in ("q", "k_cache", "v_cache", "q_idx", "k_idx_cache")}
    kw.update({k: _on_device(v) for k, v in changes.items()})
    return w.run(**kw)


WRAPPER_CASES = [
    # (id, action, message regex)
    ("max_q_len_17", lambda: _wrapper(max_q_len=17), r"^max_q_len: expected an int in \[1, 16\], got 17"),
    ("max_batch_0", lambda: _wrapper(max_batch=0), r"^max_batch: expected a positive int, got 0"),
    ("heads_not_multiple", lambda: _wrapper(num_q_heads=3), r"^num_q_heads: expected a multiple of num_kv_heads=2, got 3"),
    ("head_dim_48", lambda: _wrapper(head_dim=48), r"^head_dim: expected a head dim in \(16, 32, 64, 128\)"),
    ("dtype_int", lambda: _wrapper(dtype=torch.int8), r"^dtype: expected torch.bfloat16, torch.float16 or torch.float32"),
    ("run_before_plan", lambda: _run(*_wrapper()), r"^run: expected a planned batch \(call plan\(\) first\), got none"),
    ("step_plan_before_plan", lambda: _wrapper()[0].step_plan, r"^step_plan: plan\(\) first"),
    ("plan_batch_too_big", lambda: _plan(*_wrapper(max_batch=1)), r"^page_table: expected at most max_batch=1 rows, got 2"),
    ("plan_pages_too_wide", lambda: _plan(*_wrapper(max_pages=1)), r"^page_table: expected at most max_pages=1 columns, got"),
    ("plan_total_q_too_big", lambda: _plan(*_wrapper(max_q_len=1)), r"^total_q: expected an int in \[0, batch \* max_q_len = 2\], got 4"),
    ("plan_seq_lens_int64", lambda: _plan(_wrapper()[0], base(), seq_lens_k=base()["seq_lens_k"].long()),
     r"^seq_lens_k: expected dtype int32, got int64"),
    ("pdl_not_bool", lambda: _wrapper(pdl="yes"), r"^pdl: expected None, True or False, got 'yes'"),
]
if torch.device(KERNEL_DEVICE).type == "cpu":  # PDL needs CUDA sm_90+ (the GPU tests run the wrapper with it)
    WRAPPER_CASES.append(("pdl_on_interpreter", lambda: _wrapper(pdl=True),
                          r"^pdl: programmatic dependent launch needs CUDA sm_90\+"))


def _planned_run(index_fp8=False, **changes):
    w, a = _wrapper(index_fp8=index_fp8)
    _plan(w, a)
    return _run(w, a, **changes)


def _fp8_keys():
    k = B["k_idx_cache"]
    return dict(k_idx_cache=k.float().to(torch.float8_e4m3fn), k_idx_scale=torch.ones(k.shape[:2]))


WRAPPER_CASES += [
    ("run_q_rows_not_planned", lambda: _planned_run(q=B["q"][:3].contiguous(), q_idx=B["q_idx"][:3].contiguous()),
     r"^q.shape\[0\]: expected 4 \(planned / built for\), got 3"),
    ("run_q_dtype_not_built_for", lambda: _planned_run(q=B["q"].float(), k_cache=B["k_cache"].float(),
                                                       v_cache=B["v_cache"].float()),
     r"^q: expected dtype torch.float16 \(built for\), got torch.float32"),
    ("run_index_dim_not_built_for", lambda: _planned_run(q_idx=B["q_idx"].repeat(1, 1, 2).contiguous(),
                                                         k_idx_cache=B["k_idx_cache"].repeat(1, 1, 2).contiguous()),
     r"^q_idx.shape\[2\]: expected 16 \(planned / built for\), got 32"),
    ("index_fp8_not_bool", lambda: _wrapper(index_fp8=1), r"^index_fp8: expected True or False, got 1"),
    ("run_fp8_keys_on_plain_key_wrapper", lambda: _planned_run(**_fp8_keys()),
     r"^k_idx_scale: the wrapper was built with index_fp8=False \(keys in q's dtype, no k_idx_scale\), got k_idx_scale given"),
    ("run_plain_keys_on_fp8_wrapper", lambda: _planned_run(index_fp8=True),
     r"^k_idx_scale: the wrapper was built with index_fp8=True \(8-bit keys with k_idx_scale\), got no k_idx_scale"),
    ("run_plain_keys_with_scale_on_fp8_wrapper",
     lambda: _planned_run(index_fp8=True, k_idx_scale=torch.ones(B["k_idx_cache"].shape[:2])),
     r"^k_idx_cache: the wrapper was built with index_fp8=True \(float8_e4m3fn keys\), got torch.float16"),
]


@pytest.mark.parametrize("action,pattern", [c[1:] for c in WRAPPER_CASES], ids=[c[0] for c in WRAPPER_CASES])
def test_decode_wrapper_misuse_raises(action, pattern):
    with pytest.raises(ValueError, match=pattern):
        action()
