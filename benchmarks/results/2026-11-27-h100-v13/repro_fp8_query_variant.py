"""Bisect the illegal memory access of decode_run.py fp8_query_variant (session 6)."""
import sys, os, traceback
sys.path.insert(0, os.getcwd()); sys.path.insert(0, os.path.join(os.getcwd(), "benchmarks"))
import torch
import msa_sgl
from msa_sgl import decode as md
from msa_sgl.ops import index_branch as ib
from harness import bench as hb
from decode_run import quantized, _wrapper

order = [tuple(int(v) for v in p.split("x")) for p in sys.argv[1].split(",")]
fused = {"none": None, "0": False, "1": True}[sys.argv[2]]
md.FUSED_SELECT = fused
for batch, ctx in order:
    prob = hb.make_big_problem([1] * batch, [ctx] * batch, dtype=torch.bfloat16, seed=3)
    torch.cuda.synchronize(); print("problem", batch, ctx, flush=True)
    k8, sc = quantized(prob)
    torch.cuda.synchronize(); print("quantized", flush=True)
    w = _wrapper(prob, 1, index_fp8=True)
    torch.cuda.synchronize(); print("planned", w._planned[4:], w._planned[2], flush=True)
    a = prob.args
    for q8 in (True, False):
        ib.FP8_QUERY = q8
        try:
            out = w.run(a["q"], a["k_cache"], a["v_cache"], a["q_idx"], k8, k_idx_scale=sc)
            torch.cuda.synchronize(); print("eager ok q8", q8, torch.isfinite(out).all().item(), flush=True)
            ms = hb.bench_graph_ms(lambda: w.run(a["q"], a["k_cache"], a["v_cache"], a["q_idx"], k8, k_idx_scale=sc))
            print("graph ok q8", q8, ms, flush=True)
        finally:
            ib.FP8_QUERY = True
    del prob, k8, sc, w, a
    torch.cuda.empty_cache()
print("ALL OK", flush=True)
