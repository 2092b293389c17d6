"""Host time of msa_attention calls on the GPU machine (NOTES.md v21).

    PYTHONPATH=$PWD python3 benchmarks/host_time.py sizes   # host vs back-to-back GPU time by chunk size
    PYTHONPATH=$PWD python3 benchmarks/host_time.py parts   # host time a call by function, single ops
    PYTHONPATH=$PWD python3 benchmarks/host_time.py wrapper # a layer: msa_attention vs MSAPrefillWrapper.run
    PYTHONPATH=$PWD python3 benchmarks/host_time.py plan    # MSADecodeWrapper.plan; its row metadata before / after v24e

Host time: a call's launches queued behind a long GPU sleep (torch.cuda._sleep), so no launch
waits for the GPU - what the call costs the CPU. Back-to-back GPU time: do_bench medians. A call
whose host time exceeds its GPU time is host-bound whenever its caller waits for it. `parts`
wraps msa_sgl's host functions and Triton's JITFunction.run with timers (inclusive times; nested
entries overlap). Compare host times only within one process: they differ by up to ~30% between
machine starts.
"""

from __future__ import annotations

import collections
import functools
import sys
import time

import torch
import triton
import triton.language as tl

import msa_sgl
from harness import bench as hb
from msa_sgl import _validate
from msa_sgl.ops import index_branch as ib
from msa_sgl.ops import main_branch as mb
from msa_sgl.ops import metadata as md


def host_ms(fn, n=10, sleep_cycles=100_000_000) -> float:
    """Median host time of ``fn()`` with the GPU kept busy (ms)."""
    fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(n):
        torch.cuda.synchronize()
        torch.cuda._sleep(sleep_cycles)
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    torch.cuda.synchronize()
    return sorted(out)[n // 2]


def sizes():
    for C, P, b in ((1024, 0, 1), (2048, 0, 1), (4096, 0, 1), (8192, 0, 1), (16384, 0, 1), (2048, 16384, 1),
                    (4096, 16384, 1), (16384, 16384, 1), (1, 131072, 1), (1, 131072, 8)):
        prob = hb.make_big_problem([C] * b, [P + C] * b, dtype=torch.bfloat16, seed=C + P + b)
        fn = functools.partial(msa_sgl.msa_attention, **prob.msa_args())
        print(f"{b} x {C} queries after {P}: host {host_ms(fn):.3f} ms, GPU back-to-back "
              f"{hb.bench_ms(fn, rep=50):.3f} ms", flush=True)
        del prob, fn
        torch.cuda.empty_cache()


@triton.jit
def _nop(a0, a1, a2, a3, a4, a5, a6, a7, n0, n1, n2, n3, n4, n5, n6, n7, n8, n9, n10, n11, X: tl.constexpr,
         Y: tl.constexpr):
    pass


def parts():
    acc = collections.defaultdict(lambda: [0, 0.0])

    def timed(label, f):
        @functools.wraps(f)
        def g(*a, **k):
            t0 = time.perf_counter()
            try:
                return f(*a, **k)
            finally:
                acc[label][0] += 1
                acc[label][1] += time.perf_counter() - t0
        return g

    for mod, names in ((ib, ("plan_index", "call_rows", "launch_index")),
                       (mb, ("token_requests", "launch_dense_rows", "_kv_outer", "build_block_tiles")),
                       (_validate, ("check_msa_inputs",))):
        for n in names:
            if hasattr(mod, n):
                setattr(mod, n, timed(f"{mod.__name__.split('.')[-1]}.{n}", getattr(mod, n)))
    run0 = triton.runtime.jit.JITFunction.run

    def run(self, *a, **k):
        return timed("triton launch " + self.fn.__name__, functools.partial(run0, self))(*a, **k)

    triton.runtime.jit.JITFunction.run = run
    try:
        for C, P in ((4096, 0), (16384, 16384)):
            prob = hb.make_big_problem([C], [P + C], dtype=torch.bfloat16, seed=C + P)
            fn = functools.partial(msa_sgl.msa_attention, **prob.msa_args())
            fn()
            acc.clear()
            n = 20
            med = host_ms(fn, n=n)  # acc holds its n calls and its warm-up call
            print(f"== {C} queries after {P}: msa_attention host {med:.3f} ms a call (median, timers on)")
            for k, (c, t) in sorted(acc.items(), key=lambda kv: -kv[1][1]):
                print(f"   {k:45s} {c / (n + 1):5.1f} calls  {t / (n + 1) * 1e3:7.3f} ms  ({t / c * 1e6:6.1f} us each)")
            del prob, fn
            torch.cuda.empty_cache()
    finally:
        triton.runtime.jit.JITFunction.run = run0
    x = torch.randint(0, 1 << 20, (1 << 20,), device="cuda", dtype=torch.int32)
    cu = torch.tensor([0, 4096], device="cuda", dtype=torch.int32)
    ops_ = {
        "triton launch, 8 pointers + 12 ints": lambda: _nop[(1,)](x, x, x, x, x, x, x, x, 1, 2, 3, 4, 5, 6, 7, 8, 9,
                                                                  10, 11, 12, X=1, Y=2),
        "torch.sort 1M int32, stable": lambda: torch.sort(x, stable=True),
        "torch.searchsorted 1M": lambda: torch.searchsorted(x, x, out_int32=True),
        "torch.zeros 1M int32": lambda: torch.zeros(1 << 20, dtype=torch.int32, device="cuda"),
        "torch.empty 1M int32": lambda: torch.empty(1 << 20, dtype=torch.int32, device="cuda"),
        "torch.cumsum 1M": lambda: torch.cumsum(x, 0, dtype=torch.int32),
        "slice and subtract": lambda: cu[1:] - cu[:-1],
        "metadata.call_rows, 4096 rows": lambda: md.call_rows(cu, 4096, 32),
    }
    for name, f in ops_.items():
        print(f"   {name:40s} {host_ms(lambda: [f() for _ in range(20)], n=5) / 20 * 1e3:7.1f} us host", flush=True)


def plan(rounds=3):
    """MSADecodeWrapper.plan's host time, and the part v24e replaced: the rows' requests and the
    index tile map by searchsorted + build_tile_map (before) or one call_rows launch (after),
    rounds interleaved, same buffers."""
    for b, q_len in ((1, 1), (8, 1), (64, 1), (1, 8), (64, 4)):
        prob = hb.make_big_problem([q_len] * b, [4096] * b, dtype=torch.bfloat16, seed=b + q_len)
        w = hb.planned_decode_wrapper(prob, q_len)
        a = prob.args
        total_q, cu = b * q_len, w._cu_seqlens[: b + 1]
        block_t = w._planned.index.block_t
        tok64 = torch.zeros(total_q, dtype=torch.int64, device="cuda")
        rows = torch.arange(total_q, dtype=torch.int32, device="cuda")

        def before():
            torch.searchsorted(cu[1:b], rows, right=True, out=tok64)
            md.build_tile_map(cu, total_q, block_t, out=w._tile_cum)

        def after():
            md.call_rows(cu, total_q, block_t, out=(w._tile_cum, w._token_req))

        def whole():
            w.plan(a["page_table"], a["cu_seqlens_q"], a["seq_lens_k"], total_q)

        res = {k: [] for k in ("before", "after", "plan")}
        for _ in range(rounds):
            for k, fn in (("before", before), ("after", after), ("plan", whole)):
                res[k].append(host_ms(fn, n=21, sleep_cycles=20_000_000))
        print(f"{b} x q{q_len}: host ms, rounds: " + "; ".join(
            f"{k} " + " ".join(f"{x:.3f}" for x in v) for k, v in res.items()), flush=True)


def wrapper(rounds=5):
    """Host time of one layer: msa_attention against MSAPrefillWrapper.run after one plan()
    (rounds interleaved, medians of 15 calls each), the plan's own host time, and the outputs
    compared bitwise."""
    for C, P, b in ((2048, 0, 1), (4096, 0, 1), (4096, 16384, 1), (16384, 16384, 1), (512, 4096, 16)):
        prob = hb.make_big_problem([C] * b, [P + C] * b, dtype=torch.bfloat16, seed=C + P + b)
        a = prob.msa_args()
        w = msa_sgl.MSAPrefillWrapper(a["config"], num_q_heads=a["q"].shape[1], num_kv_heads=a["k_cache"].shape[2],
                                      head_dim=a["q"].shape[2], index_dim=a["q_idx"].shape[2], dtype=a["q"].dtype)
        plan = functools.partial(w.plan, a["page_table"], a["cu_seqlens_q"], a["seq_lens_k"], a["q"].shape[0])
        plan()
        layer = {"msa_attention": functools.partial(msa_sgl.msa_attention, **a),
                 "wrapper.run": functools.partial(w.run, a["q"], a["k_cache"], a["v_cache"], a["q_idx"],
                                                  a["k_idx_cache"])}
        same = torch.equal(layer["msa_attention"](), layer["wrapper.run"]())
        res = {k: [] for k in layer}
        for _ in range(rounds):
            for k, f in layer.items():
                res[k].append(host_ms(f, n=15))
        gpu = hb.bench_ms(layer["wrapper.run"], rep=50)
        print(f"{b} x {C} queries after {P}: host ms a layer, {rounds} rounds sorted: "
              + "; ".join(f"{k} {[round(x, 3) for x in sorted(v)]}" for k, v in res.items())
              + f"; plan() {host_ms(plan, n=15):.3f} ms host; run back-to-back {gpu:.3f} ms GPU; outputs bitwise "
              f"equal: {same}", flush=True)
        del prob, a, w, layer
        torch.cuda.empty_cache()


if __name__ == "__main__":
    {"sizes": sizes, "parts": parts, "wrapper": wrapper, "plan": plan}[sys.argv[1]]()
