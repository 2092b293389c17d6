"""Programmatic dependent launch in the decode step, A/B on one device call (NOTES.md v7).

    python benchmarks/pdl_ab.py

Per point (MiniMax-M3 shapes, bf16, graph replays of back-to-back steps, inputs rotated as in
decode_run.py): the wrapper's step without PDL and with PDL, each kernel letting its successor
launch right after its own wait ("early", mode 1) or when it exits (mode 2), per kernel
(VARIANTS); "_gap" variants put one small non-PDL kernel between steps, as a model's other
layers do. Rounds interleave the variants and report medians, so clock drift does not favour
one. Writes $OUT/pdl_ab.json.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import decode_run as dr  # noqa: E402
import gpu_run  # noqa: E402
from harness import bench as hb  # noqa: E402
from msa_sgl.ops import metadata  # noqa: E402

POINTS = [(1, 32768), (1, 131072), (1, 1 << 20), (8, 131072), (8, 1 << 20), (64, 131072)]
ROUNDS = 3
_KERNELS = ("index_partial", "index_finalize", "slot_partial", "merge_heads", "q_outer")


def _per_kernel(**modes):
    return {k: modes.get(k, 2) for k in _KERNELS}


# variant -> metadata.PDL_TRIGGER (None: the wrapper without PDL)
VARIANTS = {
    "off": None,
    "all_early": 1,
    "all_exit": 2,
    "index_early": _per_kernel(index_partial=1, index_finalize=1),
    "partial_early": _per_kernel(index_partial=1),
    "to_slot_early": _per_kernel(index_partial=1, index_finalize=1, slot_partial=1),
    "merge_early": _per_kernel(merge_heads=1, q_outer=1),
}


def point(batch, ctx, q_len=1):
    _, need = dr.compulsory_bytes(batch, ctx, q_len)
    copies = max(1, min(8, math.ceil(200e6 / need)))
    probs = [hb.make_big_problem([q_len] * batch, [ctx] * batch, dtype=torch.bfloat16, seed=batch + ctx + i)
             for i in range(copies)]
    w_on = [dr._wrapper(p, q_len, pdl=True) for p in probs]
    w_off = [dr._wrapper(p, q_len, pdl=False) for p in probs]
    gap = torch.zeros(1 << 16, device="cuda")

    def steps(ws, with_gap=False):
        def fn():
            for w, p in zip(ws, probs):
                dr._run(w, p.args)
                if with_gap:  # a non-PDL kernel between layers, as in a model (o_proj, MoE, ...)
                    gap.add_(1.0)
        return fn

    times, outs = {}, {}
    for _ in range(ROUNDS):
        for name, trig in list(VARIANTS.items()) + [("off_gap", None), ("all_early_gap", 1)]:
            metadata.PDL_TRIGGER = 1 if trig is None else trig
            ws = w_off if trig is None else w_on
            fn = steps(ws, name.endswith("_gap"))
            fn()
            torch.cuda.synchronize()
            outs[name] = dr._run(ws[0], probs[0].args).clone()
            times.setdefault(name, []).append(hb.bench_graph_ms(fn) / copies)
    metadata.PDL_TRIGGER = 1
    rec = dict(batch=batch, ctx=ctx, q_len=q_len, copies=copies,
               bitwise_equal=all(torch.equal(outs["off"], o) for o in outs.values()),
               us={k: statistics.median(v) * 1e3 for k, v in times.items()}, rounds_ms=times)
    dr.log("pdl", {k: v for k, v in rec.items() if k != "rounds_ms"})
    return rec


def main():
    gpu_run.env_info()
    res = {"env": gpu_run.RESULTS["env"], "points": []}
    try:
        for b, c in POINTS:
            res["points"].append(point(b, c))
            gpu_run.free()
        res["points"].append(point(1, 131072, q_len=8))
    finally:
        (Path(os.environ.get("OUT", ".")) / "pdl_ab.json").write_text(json.dumps(res, indent=1))
        print(f"card {res['env'].get('card')} torch {res['env'].get('torch')} triton {res['env'].get('triton')}")
        names = list(VARIANTS) + ["off_gap", "all_early_gap"]
        print("step us (median of rounds); *_gap: a non-PDL kernel between steps")
        print("batch      ctx q | " + " ".join(f"{n:>13}" for n in names) + " | bitwise")
        for r in res["points"]:
            print(f"{r['batch']:>5} {r['ctx']:>8} {r['q_len']} | " + " ".join(f"{r['us'][n]:13.1f}" for n in names)
                  + f" | {r['bitwise_equal']}")


if __name__ == "__main__":
    main()
