"""Index-branch studies on one device call (NOTES.md v10).

    python benchmarks/index_ab.py [prefill|decode|ahead|order|ws]

1. Prefill indexer, one 16K chunk after 0, 112K and 1008K cached tokens (MiniMax-M3 shapes), bf16 and
   8-bit index keys: ``ops.index_topk`` with several (num_warps, num_stages) launches, ms and
   TF/s of useful work (2 x Hkv x d_idx x visible keys); selections must equal the default
   launch's bitwise.
2. Decode at batch 1 (32K, 128K, 1M) with both key formats: the CUDA time of every kernel of one
   MSADecodeWrapper.run() (torch.profiler) beside the graph-replayed step.
3. (ahead) the prefill indexer with 8-bit keys, key scales prefetched a block ahead or not.
4. (order) the prefill indexer with its tiles last to first or in order, at 1 / 2 / 4 splits (v15).
5. (ws) the prefill indexer, bf16 keys, by the Triton kernel or the Gluon scan (index_ws; v27b) on
   128- or 256-row tiles; AB_POINTS=32768,65536 ... for other cached prefixes than 16K, 0, 112K, 1008K.
Writes $OUT/index_ab.json.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import decode_run as dr  # noqa: E402
import gpu_run  # noqa: E402
from harness import bench as hb  # noqa: E402
from msa_sgl import ops  # noqa: E402
from profile_decode import kernel_table  # noqa: E402

LAUNCHES = [(None, None), (8, 3), (4, 3), (4, 4), (4, 5), (4, 6)]  # (num_warps, num_stages); None: the plan's


def _chunk(P, C):
    """index_topk's arguments for one C-token chunk after P cached tokens, with bf16 and with
    8-bit index keys, and the chunk's useful FLOPs."""
    prob = hb.make_big_problem([C], [P + C], dtype=torch.bfloat16, seed=P + 11)
    k8, sc = hb.quantized_index_keys(prob)
    ia = prob.index_args()
    keys = (("bf16", ia), ("fp8", {**ia, "k_idx_cache": k8, "k_idx_scale": sc}))
    return keys, hb.index_flops([C], [P + C], 4, 128)


def prefill(res, P=114688, C=16384):
    variants, flops = _chunk(P, C)
    for keys, args in variants:
        base = ops.index_topk(**args)
        for nw, ns in LAUNCHES:
            try:
                got = ops.index_topk(**args, num_warps=nw, num_stages=ns)
                ms = hb.bench_ms(lambda: ops.index_topk(**args, num_warps=nw, num_stages=ns), rep=100)
                rec = dict(P=P, C=C, keys=keys, num_warps=nw, num_stages=ns, ms=ms, tflops=flops / ms / 1e9,
                           same_as_default=bool(torch.equal(got, base)))
            except Exception as e:  # noqa: BLE001
                rec = dict(keys=keys, num_warps=nw, num_stages=ns, error=repr(e)[:300])
            dr.log("prefill index", rec)
            res["prefill"].append(rec)


def order(res, P, C=16384, rounds=4):
    """The prefill indexer with its tiles taken last to first (index_branch._LAST_FIRST) or in
    order, at the plan's splits and at 2 / 4 splits, bf16 and 8-bit keys, rounds interleaved."""
    from msa_sgl.ops import index_branch as ib

    default = ib._LAST_FIRST
    variants, flops = _chunk(P, C)
    for keys, args in variants:
        base = ops.index_topk(**args)
        times = {}
        for _ in range(rounds):
            for last_first in (False, True):
                for n_split in (None, 2, 4):
                    ib._LAST_FIRST = last_first
                    try:
                        same = bool(torch.equal(ops.index_topk(**args, n_split=n_split), base))
                        ms = hb.bench_ms(lambda: ops.index_topk(**args, n_split=n_split), rep=100)
                    finally:
                        ib._LAST_FIRST = default
                    times.setdefault((last_first, n_split), []).append((ms, same))
        for (last_first, n_split), v in times.items():
            ms = sorted(m for m, _ in v)[(len(v) - 1) // 2]  # the lower median
            rec = dict(P=P, C=C, keys=keys, last_first=last_first, n_split=n_split, ms=ms, best_ms=min(m for m, _ in v),
                       tflops=flops / ms / 1e9, same_as_default=all(s for _, s in v), rounds_ms=[m for m, _ in v])
            dr.log("prefill index order", rec)
            res["order"].append(rec)


def ahead(res, P, C=16384, rounds=3):
    """8-bit keys: the prefill indexer with the key scales prefetched a block ahead or not
    (index_branch._SCALE_AHEAD_MAX_ROWS 128 / 0), interleaved rounds, medians."""
    from msa_sgl.ops import index_branch as ib

    default = ib._LAST_FIRST
    prob = hb.make_big_problem([C], [P + C], dtype=torch.bfloat16, seed=P + 11)
    k8, sc = hb.quantized_index_keys(prob)
    args = {**prob.index_args(), "k_idx_cache": k8, "k_idx_scale": sc}
    flops = hb.index_flops([C], [P + C], 4, 128)
    times, outs = {}, {}
    default = ib._SCALE_AHEAD_MAX_ROWS
    try:
        for _ in range(rounds):
            for name, rows in (("off", 0), ("on", 128)):
                ib._SCALE_AHEAD_MAX_ROWS = rows
                outs[name] = ops.index_topk(**args)
                times.setdefault(name, []).append(hb.bench_ms(lambda: ops.index_topk(**args), rep=100))
    finally:
        ib._SCALE_AHEAD_MAX_ROWS = default
    ms = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    rec = dict(P=P, C=C, keys="fp8", ms=ms, tflops={k: flops / v / 1e9 for k, v in ms.items()},
               same=bool(torch.equal(outs["off"], outs["on"])))
    dr.log("prefill scale ahead", rec)
    res["ahead"].append(rec)


def ws(res, P, C=16384, rounds=3):
    """bf16 keys: the prefill indexer by the Triton partial kernel or the Gluon scan
    (index_branch._INDEX_WS) on 128- or 256-row tiles (index_ws._TILE_ROWS), interleaved rounds,
    lower medians; selections compared."""
    from msa_sgl.ops import index_branch as ib
    from msa_sgl.ops import index_ws

    default = ib._INDEX_WS, index_ws._TILE_ROWS
    variants, flops = _chunk(P, C)
    args = dict(variants)["bf16"]
    times, outs = {}, {}
    try:
        for _ in range(rounds):
            for name, on, rows in (("triton", False, 128), ("gluon128", True, 128), ("gluon256", True, 256)):
                ib._INDEX_WS, index_ws._TILE_ROWS = on, rows
                outs[name] = ops.index_topk(**args)
                times.setdefault(name, []).append(hb.bench_ms(lambda: ops.index_topk(**args), rep=100))
    finally:
        ib._INDEX_WS, index_ws._TILE_ROWS = default
    ms = {k: sorted(v)[(len(v) - 1) // 2] for k, v in times.items()}
    rec = dict(P=P, C=C, keys="bf16", ms=ms, rounds_ms=times, tflops={k: flops / v / 1e9 for k, v in ms.items()},
               same=all(bool(torch.equal(outs["triton"], o)) for o in outs.values()))
    dr.log("prefill index ws", rec)
    res["ws"].append(rec)


def decode(res):
    for ctx in (32768, 131072, 1 << 20):
        prob = hb.make_big_problem([1], [ctx], dtype=torch.bfloat16, seed=ctx)
        k8 = hb.quantized_index_keys(prob)
        a = prob.args
        for keys in ("bf16", "fp8"):
            w = hb.planned_decode_wrapper(prob, 1, index_fp8=keys == "fp8")
            kw = {} if keys == "bf16" else {"k_idx_scale": k8[1]}
            kc = a["k_idx_cache"] if keys == "bf16" else k8[0]

            def fn():
                return w.run(a["q"], a["k_cache"], a["v_cache"], a["q_idx"], kc, **kw)

            step = hb.bench_graph_ms(fn) * 1e3
            table = [(name, round(us, 2), n) for name, us, n in kernel_table(fn)]
            plan = w.step_plan.index
            rec = dict(ctx=ctx, keys=keys, step_us=step, n_split=plan.n_split, num_stages=plan.num_stages,
                       kernels=table)
            dr.log("decode b1", rec)
            res["decode"].append(rec)


def main():
    gpu_run.env_info()
    res = {"env": gpu_run.RESULTS["env"], "prefill": [], "decode": [], "ahead": [], "order": [], "ws": []}
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    try:
        if what in ("all", "prefill"):
            for P in (0, 114688, 1032192):
                prefill(res, P)
                gpu_run.free()
        if what == "order":
            for P in (16384, 0, 32768, 114688):  # P = 0 second: the first point of a process runs slow
                order(res, P)
                gpu_run.free()
        if what == "ahead":
            for P in (0, 114688, 1032192):
                ahead(res, P)
                gpu_run.free()
        if what == "ws":
            points = (16384, 0, 114688, 1032192)  # P = 0 second: the first point of a process runs slow
            if os.environ.get("AB_POINTS"):  # e.g. AB_POINTS=32768,65536: other cached prefixes
                points = tuple(int(x) for x in os.environ["AB_POINTS"].split(","))
            for P in points:
                ws(res, P)
                gpu_run.free()
        if what in ("all", "decode"):
            decode(res)
    finally:
        (Path(os.environ.get("OUT", ".")) / "index_ab.json").write_text(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()
