"""pytest-benchmark suite: msa_sgl's kernels beside dense SDPA, same inputs, one process.

    python -m pytest benchmarks/test_bench_kernels.py --benchmark-enable \\
        --benchmark-json=$OUT/bench.json -p no:cacheprovider

On a GPU: MiniMax-M3 shapes in bf16, a 16K chunk after 0 / 112K / 1008K cached tokens, and
decode steps. On a CPU (Triton's interpreter) the same code at toy sizes, to check the plumbing
only. Numbers are recorded, never asserted; each benchmark's ``extra_info`` carries the useful
FLOPs so TFLOP/s can be derived from the JSON. Not part of the test command (tests/ only).
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from harness import bench as hb  # noqa: E402
from msa_sgl import ops  # noqa: E402

GPU = torch.cuda.is_available()
DEVICE = "cuda" if GPU else "cpu"
SHAPES = hb.M3 if GPU else dict(num_q_heads=8, num_kv_heads=2, head_dim=32, index_dim=32, block_size=16, topk=4)
DTYPE = torch.bfloat16 if GPU else torch.float16
CHUNK = 16384 if GPU else 48
PREFIXES = (0, 114688, 1032192) if GPU else (0, 96)


def _sync():
    if GPU:
        torch.cuda.synchronize()


def _timed(benchmark, fn, rounds):
    def run():
        fn()
        _sync()

    run()  # compile and warm up
    benchmark.pedantic(run, rounds=rounds, iterations=1, warmup_rounds=1)


@pytest.fixture(scope="module", params=PREFIXES, ids=lambda p: f"prefix{p}")
def prefill_problem(request):
    P = request.param
    prob = hb.make_big_problem([CHUNK], [P + CHUNK], dtype=DTYPE, device=DEVICE, seed=P, **SHAPES)
    topk = ops.index_topk(**prob.index_args())
    return P, prob, topk


def test_prefill_index(benchmark, prefill_problem):
    P, prob, _ = prefill_problem
    benchmark.extra_info.update(P=P, C=CHUNK, flops=hb.index_flops([CHUNK], [P + CHUNK], SHAPES["num_kv_heads"],
                                                                    SHAPES["index_dim"]))
    _timed(benchmark, lambda: ops.index_topk(**prob.index_args()), rounds=20 if GPU else 1)


@pytest.mark.parametrize("method", ["kv_outer", "q_outer"])
def test_prefill_main(benchmark, prefill_problem, method):
    P, prob, topk = prefill_problem
    a = prob.args
    attended = hb.attended_keys(topk, a["cu_seqlens_q"], a["seq_lens_k"], SHAPES["block_size"])
    G = SHAPES["num_q_heads"] // SHAPES["num_kv_heads"]
    benchmark.extra_info.update(P=P, C=CHUNK, method=method, flops=hb.main_flops(attended, G, SHAPES["head_dim"]))
    _timed(benchmark, lambda: ops.sparse_attention(**prob.attention_args(topk), method=method), rounds=20 if GPU else 1)


def test_prefill_dense_sdpa(benchmark, prefill_problem):
    """Dense attention of the chunk over its whole context (bottom-right causal), SDPA's pick."""
    import torch.nn.functional as F

    P, prob, _ = prefill_problem
    hq, d = SHAPES["num_q_heads"], SHAPES["head_dim"]
    q = torch.randn(1, hq, CHUNK, d, device=DEVICE, dtype=DTYPE)
    k = torch.randn(1, hq, P + CHUNK, d, device=DEVICE, dtype=DTYPE)
    v = torch.randn_like(k)
    mask = None
    if P:
        from torch.nn.attention.bias import causal_lower_right

        mask = causal_lower_right(CHUNK, P + CHUNK)
    benchmark.extra_info.update(P=P, C=CHUNK, flops=4 * hq * d * hb.visible_keys([CHUNK], [P + CHUNK]))
    _timed(benchmark, lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None),
           rounds=5 if GPU else 1)


@pytest.mark.parametrize("batch,ctx", [(1, 131072), (8, 131072), (64, 32768)] if GPU else [(2, 200)])
def test_decode_step(benchmark, batch, ctx):
    prob = hb.make_big_problem([1] * batch, [ctx] * batch, dtype=DTYPE, device=DEVICE, seed=batch, **SHAPES)
    benchmark.extra_info.update(batch=batch, ctx=ctx, bytes=batch * ctx * SHAPES["index_dim"] * 2)

    def step():
        topk = ops.index_topk(**prob.index_args())
        ops.sparse_attention(**prob.attention_args(topk))

    _timed(benchmark, step, rounds=50 if GPU else 1)
