"""The KV-outer form with each pass's merge beside the next pass's partial kernel (NOTES.md v31).

    PYTHONPATH=$PWD python benchmarks/overlap_ab.py [--prefixes 0,114688] [--rounds 3]

Why: a 16K chunk's main branch is two passes (two KV groups each), and each pass is a partial
kernel (tensor-core and issue bound, one persistent program an SM) followed by a merge that only
moves bytes (~2.2 GB at ~3.8 TB/s, ~0.6 ms). Run one after the other, the merge leaves the tensor
cores idle and the partial kernel leaves DRAM half used. Variants (main_branch._KV_OVERLAP_MERGE,
_KV_WS_PROGRAMS, workspace_bytes): "base" the shipped form; "pN" the partial kernel on N
persistent programs; "ovN" partials on a high-priority stream into two workspace halves in turn,
merges on the caller's stream, so pass i's merge runs on the SMs the N programs leave free (and
fills the partial kernel's tail); "_4p" half the workspace (4 one-group passes, the same memory as
the overlapped form's two halves).

Points (MiniMax-M3 shapes, bf16, the index kernels' selection): a 16K chunk after each prefix.
Times of ``sparse_attention(method="kv_outer")``: do_bench medians (back to back, the host ahead)
and CUDA events behind the suite's matmul lead (test_bench_kernels._lead). Outputs compared
bitwise with "base". Writes $OUT/overlap_ab.json.
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

HALF = mb.KV_OUTER_WORKSPACE_BYTES // 2
VARIANTS = {
    "base": {},
    "p116": dict(programs=116),
    "ov132": dict(overlap=True),
    "ov124": dict(overlap=True, programs=124),
    "ov116": dict(overlap=True, programs=116),
    "ov100": dict(overlap=True, programs=100),
    "base_4p": dict(workspace=HALF),
    "ov116_4p": dict(overlap=True, programs=116, workspace=HALF),
}


def _apply(v):
    mb._KV_OVERLAP_MERGE = v.get("overlap", False)
    mb._KV_WS_PROGRAMS = v.get("programs")


def lead_ms(fn, rounds=12, keep=8):
    times, _ = tbk.lead_event_rounds(fn, rounds)
    return statistics.median(times[-keep:])


def point(prefix, chunk, rounds):
    prob = hb.make_big_problem([chunk], [prefix + chunk], dtype=torch.bfloat16, seed=chunk + prefix)
    args = prob.attention_args(ops.index_topk(**prob.index_args()))

    def call(v):
        return lambda: mb.sparse_attention(**args, method="kv_outer", workspace_bytes=v.get("workspace"))

    outs, do, ev = {}, {n: [] for n in VARIANTS}, {n: [] for n in VARIANTS}
    try:
        for _ in range(rounds):
            for name, v in VARIANTS.items():
                _apply(v)
                outs[name] = call(v)()
                torch.cuda.synchronize()
                do[name].append(hb.bench_ms(call(v), rep=100))
                ev[name].append(lead_ms(call(v)))
    finally:
        _apply({})
    base = outs["base"]
    pt = dict(prefix=prefix, chunk=chunk, ms={n: statistics.median(t) for n, t in do.items()}, rounds_ms=do,
              ms_behind_lead={n: statistics.median(t) for n, t in ev.items()}, rounds_ms_behind_lead=ev,
              bitwise_equal={n: bool(torch.equal(base, o)) for n, o in outs.items()},
              max_abs_diff={n: float((base.float() - o.float()).abs().max()) for n, o in outs.items()})
    print(f"16K chunk after {prefix}: ms do_bench / behind the lead / bitwise equal to base", flush=True)
    for n in VARIANTS:
        print(f"  {n:10s} {pt['ms'][n]:7.3f} {pt['ms_behind_lead'][n]:7.3f} {pt['bitwise_equal'][n]}", flush=True)
    return pt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prefixes", default="0,114688")
    ap.add_argument("--chunk", type=int, default=16384)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    res = dict(env=dict(card=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__),
               variants=VARIANTS, points=[])
    print(f"card {res['env']['card']} torch {torch.__version__} triton {triton.__version__}", flush=True)
    try:
        for p in (int(x) for x in a.prefixes.split(",")):
            res["points"].append(point(p, a.chunk, a.rounds))
            torch.cuda.empty_cache()
    finally:
        (Path(os.environ.get("OUT", ".")) / "overlap_ab.json").write_text(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()
