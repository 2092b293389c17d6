"""The SM clock a timed call meets, and what it does to a decode step (NOTES.md v29e).

    PYTHONPATH=$PWD python benchmarks/clock_probe.py      # one GPU; writes $OUT/clock_probe.json

The suite times each entry by CUDA events behind ~10 ms of bf16 matmuls (test_bench_kernels._lead)
and by wall clock, back to back. For decode steps (CUDA-graph replays, the host always ahead) the
two differ by up to ~20% for msa_sgl and not at all for dense cuDNN (v29d). This script measures
the SM clock itself in each state: a one-warp probe kernel spins on dependent FMAs and reads
%clock64 and %globaltimer before and after (MHz = cycles / ns x 1000), queued (1) after the card
idled 0.5 s, (2) right behind the matmul lead, (3) behind 20 ms of back-to-back decode replays,
(4) behind the lead and one decode round, (5) in 50 rounds of lead + round in a row, as the suite's
event rounds run them. Decode rounds are timed by events in both states too
(back to back / behind the lead), at 1 x 1M with bf16 index keys and 8 x 1M with 8-bit keys
(M3 shapes), with dense cuDNN decode at 1 x 1M as the bandwidth-bound control.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import triton
import triton.language as tl

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_bench_kernels as tbk  # noqa: E402  (the suite's lead and graph rounds, as it runs them)
from harness import bench as hb  # noqa: E402

SHAPES = dict(num_q_heads=64, num_kv_heads=4, head_dim=128, index_dim=128, block_size=128, topk=16)


@triton.jit
def _probe_kernel(OUT, n_iter):
    """[clock64 start, globaltimer start, clock64 end, globaltimer end, x] of one warp that
    spins on n_iter dependent FMAs (the spin's start hangs on both first reads, the last reads
    on its result, so neither is moved across it)."""
    o = tl.arange(0, 32)
    c0 = tl.inline_asm_elementwise("mov.u64 $0, %clock64;", "=l,r", [o], dtype=tl.int64, is_pure=False, pack=1)
    g0 = tl.inline_asm_elementwise("mov.u64 $0, %globaltimer;", "=l,r", [o], dtype=tl.int64, is_pure=False, pack=1)
    x = (c0 + g0).to(tl.float32) * 0.0 + 1.0
    for _ in range(n_iter):
        x = x * 0.999999 + 1e-7
    c1 = tl.inline_asm_elementwise("mov.u64 $0, %clock64;", "=l,f", [x], dtype=tl.int64, is_pure=False, pack=1)
    g1 = tl.inline_asm_elementwise("mov.u64 $0, %globaltimer;", "=l,f", [x], dtype=tl.int64, is_pure=False, pack=1)
    m = o == 0
    tl.store(OUT + o * 0, c0, mask=m)
    tl.store(OUT + 1 + o * 0, g0, mask=m)
    tl.store(OUT + 2 + o * 0, c1, mask=m)
    tl.store(OUT + 3 + o * 0, g1, mask=m)
    tl.store(OUT + 4 + o * 0, x.to(tl.int64), mask=m)


def probe(n_iter=100000):
    """Queue one probe; returns a function giving its MHz after a sync."""
    out = torch.zeros(5, dtype=torch.int64, device="cuda")
    _probe_kernel[(1,)](out, n_iter, num_warps=1)

    def mhz():
        c0, g0, c1, g1, _ = out.tolist()
        return (c1 - c0) / max(1, g1 - g0) * 1e3
    return mhz


def mhz_now():
    """The MHz of a probe queued now, after a sync."""
    m = probe()
    torch.cuda.synchronize()
    return m()


def timed(replay, steps, before=None):
    """(us a step of one round ``replay`` of ``steps`` steps, timed by events; the SM MHz a probe
    right after it saw)."""
    if before is not None:
        before()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    e0.record()
    replay()
    e1.record()
    m = probe()
    e1.synchronize()
    return e0.elapsed_time(e1) / steps * 1e3, m()


def main():
    out_path = Path(os.environ.get("OUT", ".")) / "clock_probe.json"
    res = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__}
    mhz_now()  # (compiles the probe)
    # the clock by state
    states = {}
    for rnd in range(5):
        time.sleep(0.5)
        states.setdefault("idle", []).append(mhz_now())
        tbk._lead()
        states.setdefault("after_lead", []).append(mhz_now())
        tbk._lead()
        torch.cuda._sleep(int(2e6))  # ~1 ms
        states.setdefault("after_lead_then_1ms_sleep", []).append(mhz_now())
    res["states_mhz"] = states
    print({k: [round(x) for x in v] for k, v in states.items()}, flush=True)

    res["points"] = []
    for batch, ctx, fp8 in ((1, 1 << 20, False), (8, 1 << 20, True)):
        p = hb.make_big_problem([1] * batch, [ctx] * batch, dtype=torch.bfloat16, device="cuda", seed=7, **SHAPES)
        a, w = p.args, hb.planned_decode_wrapper(p, 1, index_fp8=fp8)
        if fp8:
            k8, sc = hb.quantized_index_keys(p)
            fn = lambda: w.run(a["q"], a["k_cache"], a["v_cache"], a["q_idx"], k8, k_idx_scale=sc)  # noqa: E731
        else:
            fn = lambda: w.run(a["q"], a["k_cache"], a["v_cache"], a["q_idx"], a["k_idx_cache"])  # noqa: E731
        steps = [(f"msa b{batch} 1M {'fp8' if fp8 else 'bf16'}", fn)]
        if batch == 1:
            # (names of their own: the loop below rebinds k and v to a dict's keys and values, and
            # dense() reads its names when it runs - the first GPU run of this version failed so)
            dq = torch.randn(1, 64, 1, 128, device="cuda", dtype=torch.bfloat16)
            dk = torch.randn(1, 4, ctx, 128, device="cuda", dtype=torch.bfloat16)
            dv = torch.randn_like(dk)
            from torch.nn.attention import SDPBackend, sdpa_kernel

            def dense():
                with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
                    return torch.nn.functional.scaled_dot_product_attention(dq, dk, dv, enable_gqa=True)
            steps.append(("dense cudnn b1 1M", dense))
        for name, fn in steps:
            replay, n = tbk._graph_round([fn])  # a CUDA graph of >= 2 ms of steps, as the suite's
            rec = {"name": name, "steps": n, "b2b": [], "after_lead": []}
            for rnd in range(15):
                for _ in range(10):  # ~20 ms of back-to-back replays, then the timed one
                    replay()
                rec["b2b"].append(timed(replay, n))
                rec["after_lead"].append(timed(replay, n, tbk._lead))
            # as the suite's event rounds run: 50 rounds behind a lead each, one after the other
            # (the card at ~80% matmul duty), the probe after each
            rec["sustained"] = [timed(replay, n, tbk._lead) for _ in range(50)]
            for _ in range(10):
                replay()
            rec["b2b_after_sustained"] = [timed(replay, n) for _ in range(15)]
            for k in ("b2b", "after_lead", "sustained", "b2b_after_sustained"):
                rec[k + "_median_us"] = statistics.median(x[0] for x in rec[k])
                rec[k + "_median_mhz_after"] = statistics.median(x[1] for x in rec[k])
            print(name, {k: round(v, 1) for k, v in rec.items() if k.endswith(("_us", "_mhz_after"))}, flush=True)
            res["points"].append(rec)
    out_path.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
