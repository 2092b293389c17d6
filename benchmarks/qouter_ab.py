"""The query-outer main-branch kernel's variants (or the kernel of another source tree), same
inputs, interleaved rounds.

    python benchmarks/qouter_ab.py                 # the launch variants below; writes $OUT/qouter_ab.json
    git show REV:msa_sgl/ops/main_branch.py > /tmp/old_main_branch.py
    python benchmarks/qouter_ab.py --old /tmp/old_main_branch.py   # this tree's kernel against that one's

Variants (main_branch._Q_OUTER_SUB and the launch's num_stages, NOTES.md v30): "whole" the blocks
whole behind a branch per slot (the form before v30); "sNN_stS" the pipelined loop of NN-key
sub-blocks at S stages (Triton 3.6 keeps one K/V sub-block in flight at 64 keys and 3-4 stages,
two at 5-6; 32 keys: two at 6, three at 8); "rule" the shipped launch (main_branch.q_outer_launch).
With ``--old`` the old file's ``_sparse_attn_fwd_kernel`` (loaded as a module of msa_sgl.ops, its
relative imports resolved to this tree) replaces the current one for the "old" rounds.
``--crossover [--prefixes P,.. --chunks C,..]``: instead, chunks after cached prefixes (default
1024-8192 tokens after 32K), the query-outer form (its shipped launch) against the KV-outer form
(KV_OUTER_MIN_QUERIES), do_bench medians and event times behind the matmul lead (the host ahead).

Points (MiniMax-M3 shapes, bf16, the index kernels' selection): decode 64 x 128K and 64 x 32K
(the decode wrapper takes this form from 33 query rows), MTP 8 x 128K with 8 query tokens, and a
1024-token chunk after a 32K prefix (prefill calls under KV_OUTER_MIN_QUERIES). Times: CUDA-graph
replays of ``sparse_attention(method="q_outer")`` back to back (do_bench_cudagraph medians), and
each graph replayed behind the suite's ~10 ms matmul lead (test_bench_kernels._lead, 30 rounds in
a row, median of the last 20: the clock of a card under sustained tensor-core load, v29e-f).
Reports medians over rounds per variant and each variant's largest difference from the first.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import triton  # noqa: E402

import test_bench_kernels as tbk  # noqa: E402  (the suite's matmul lead)
from harness import bench as hb  # noqa: E402
from msa_sgl import ops  # noqa: E402
from msa_sgl.ops import main_branch as mb  # noqa: E402

VARIANTS = {"whole": (0, None), "s64_st3": (64, 3), "s64_st5": (64, 5), "s32_st6": (32, 6), "s32_st8": (32, 8),
            "s128_st3": (128, 3), "rule": (None, None)}
POINTS = [("decode_64x128K", [1] * 64, [131072] * 64), ("decode_64x32K", [1] * 64, [32768] * 64),
          ("mtp_8x128K_q8", [8] * 8, [131072] * 8), ("chunk1024_after32K", [1024], [32768 + 1024])]


def hot_us(fn, rounds=30, keep=20):
    """Median event time (us) of one replay of ``fn``'s CUDA graph behind the matmul lead."""
    return tbk.graph_lead_ms(fn, rounds, keep) * 1e3


def lead_events_ms(fn, rounds=12, keep=8):
    """Median event time (ms) of ``fn()`` queued behind the matmul lead, of the last ``keep`` of
    ``rounds`` in a row: the host's launches are all issued before the GPU reaches them, so a call
    whose host work exceeds its GPU work (the KV-outer form's at small chunks) is timed by its GPU
    work, as in a serving engine's queue."""
    return tbk.lead_median_ms(fn, rounds, keep)


def crossover(rounds, prefixes, chunks):
    """q_outer (shipped launch) against kv_outer, chunks after cached prefixes: do_bench medians
    and event times behind the matmul lead (ms)."""
    res = dict(env=dict(card=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__),
               study="crossover", points=[])
    for prefix, c in [(p, c) for p in prefixes for c in chunks]:
        prob = hb.make_big_problem([c], [prefix + c], dtype=torch.bfloat16, seed=c)
        args = prob.attention_args(ops.index_topk(**prob.index_args()))
        ms = {m: [] for m in ("q_outer", "kv_outer")}
        ev = {m: [] for m in ms}
        for _ in range(rounds):
            for m in ms:
                ms[m].append(hb.bench_ms(lambda: mb.sparse_attention(**args, method=m), rep=100))
                ev[m].append(lead_events_ms(lambda: mb.sparse_attention(**args, method=m)))
        pt = dict(chunk=c, prefix=prefix, ms={m: statistics.median(v) for m, v in ms.items()}, rounds_ms=ms,
                  ms_behind_lead={m: statistics.median(v) for m, v in ev.items()}, rounds_ms_behind_lead=ev)
        print(f"crossover: chunk {c} after {prefix}, do_bench ms q_outer {pt['ms']['q_outer']:.3f} "
              f"kv_outer {pt['ms']['kv_outer']:.3f}; behind the lead q_outer {pt['ms_behind_lead']['q_outer']:.3f} "
              f"kv_outer {pt['ms_behind_lead']['kv_outer']:.3f}", flush=True)
        res["points"].append(pt)
        prob = args = None
        torch.cuda.empty_cache()
    (Path(os.environ.get("OUT", ".")) / "qouter_crossover.json").write_text(json.dumps(res, indent=1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", help="an older msa_sgl/ops/main_branch.py (else: this tree's launch variants)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--variants", help="comma-separated names of VARIANTS (default: all)")
    ap.add_argument("--points", help="comma-separated names of POINTS (default: all)")
    ap.add_argument("--crossover", action="store_true", help="q_outer against kv_outer by chunk size instead")
    ap.add_argument("--prefixes", default="32768", help="--crossover: cached prefixes (tokens)")
    ap.add_argument("--chunks", default="1024,2048,3072,4096,8192", help="--crossover: chunk sizes (tokens)")
    a = ap.parse_args()
    if a.crossover:
        return crossover(a.rounds, [int(x) for x in a.prefixes.split(",")], [int(x) for x in a.chunks.split(",")])
    new_kernel = mb._sparse_attn_fwd_kernel
    shipped = (None, None)
    if a.old:
        variants = {"old": (hb.load_old_main_branch(a.old)._sparse_attn_fwd_kernel, shipped),
                    "new": (new_kernel, shipped)}
    else:
        names = a.variants.split(",") if a.variants else list(VARIANTS)
        variants = {n: (new_kernel, VARIANTS[n]) for n in names}
    shipped_sub = mb._Q_OUTER_SUB
    points = [p for p in POINTS if not a.points or p[0] in a.points.split(",")]
    res = dict(env=dict(card=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__),
               variants={k: v[1] for k, v in variants.items()}, points=[])
    for name, q_lens, seq_lens in points:
        prob = hb.make_big_problem(q_lens, seq_lens, dtype=torch.bfloat16, seed=1)
        args = prob.attention_args(ops.index_topk(**prob.index_args()))
        outs, times, hot = {}, {k: [] for k in variants}, {k: [] for k in variants}
        for r in range(a.rounds):
            for k, (fn, (sub, stages)) in variants.items():
                mb._sparse_attn_fwd_kernel = fn
                mb._Q_OUTER_SUB = shipped_sub if sub is None else sub
                try:
                    call = lambda: mb.sparse_attention(**args, method="q_outer", num_stages=stages)  # noqa: E731
                    if r == 0:
                        outs[k] = call().clone()
                    times[k].append(hb.bench_graph_ms(call) * 1e3)
                    hot[k].append(hot_us(call))
                finally:
                    mb._sparse_attn_fwd_kernel, mb._Q_OUTER_SUB = new_kernel, shipped_sub
        first = next(iter(outs.values())).float()
        pt = dict(point=name, us={k: statistics.median(v) for k, v in times.items()},
                  us_behind_lead={k: statistics.median(v) for k, v in hot.items()}, rounds_us=times,
                  rounds_us_behind_lead=hot,
                  max_abs_diff={k: float((o.float() - first).abs().max()) for k, o in outs.items()},
                  finite={k: bool(torch.isfinite(o).all()) for k, o in outs.items()})
        print(f"{name}: us back to back " + " ".join(f"{k} {v:.1f}" for k, v in pt["us"].items()), flush=True)
        print(f"{name}: us behind the lead " + " ".join(f"{k} {v:.1f}" for k, v in pt["us_behind_lead"].items()),
              flush=True)
        print(f"{name}: max |diff| from {next(iter(outs))} {pt['max_abs_diff']}, finite {pt['finite']}", flush=True)
        res["points"].append(pt)
        prob = args = outs = first = None
        torch.cuda.empty_cache()
    (Path(os.environ.get("OUT", ".")) / "qouter_ab.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
