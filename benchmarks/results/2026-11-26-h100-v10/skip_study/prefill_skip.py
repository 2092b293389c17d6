import sys
sys.path.insert(0, "benchmarks"); sys.path.insert(0, ".")
import torch
import decode_run as dr
from harness import bench as hb
from msa_sgl import ops
from msa_sgl.ops import index_branch as ib
for P in (0, 114688, 1032192):
    C = 16384
    prob = hb.make_big_problem([C], [P + C], dtype=torch.bfloat16, seed=P + 11)
    k8, sc = dr.quantized(prob)
    ia = prob.index_args()
    flops = hb.index_flops([C], [P + C], 4, 128)
    for keys, extra in (("bf16", {}), ("fp8", {"k_idx_cache": k8, "k_idx_scale": sc})):
        args = {**ia, **extra}
        res = {}
        outs = {}
        for rnd in range(2):
            for skip in (True, False):
                ib._SKIP_HOPELESS = skip
                outs[skip] = ops.index_topk(**args)
                res.setdefault(skip, []).append(hb.bench_ms(lambda: ops.index_topk(**args), rep=50))
        ib._SKIP_HOPELESS = True
        print(dict(P=P, keys=keys, skip_ms=res[True], full_ms=res[False],
                   skip_tflops=round(flops / min(res[True]) / 1e9), full_tflops=round(flops / min(res[False]) / 1e9),
                   bitwise=bool(torch.equal(outs[True], outs[False]))), flush=True)
