"""The query-outer main-branch kernel of two source trees, same inputs, interleaved rounds.

    git show REV:msa_sgl/ops/main_branch.py > /tmp/old_main_branch.py
    python benchmarks/qouter_ab.py --old /tmp/old_main_branch.py   # writes $OUT/qouter_ab.json

The old file is loaded as a module of msa_sgl.ops (its relative imports resolve to this tree), and
its ``_sparse_attn_fwd_kernel`` replaces the current one for the "old" rounds of
``sparse_attention(method="q_outer")``. Points (MiniMax-M3 shapes, bf16, the index kernels'
selection): decode batch 64 x 128K (the wrapper takes this form from 33 requests) and a 1024-token
chunk after a 32K prefix (prefill calls under KV_OUTER_MIN_QUERIES). Times are CUDA-graph replays
(do_bench_cudagraph medians; the API call's host work would otherwise set the decode point's
time); reports the median over rounds per variant and whether the outputs are bitwise equal.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import triton  # noqa: E402

from harness import bench as hb  # noqa: E402
from msa_sgl import ops  # noqa: E402
from msa_sgl.ops import main_branch as mb  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", required=True, help="an older msa_sgl/ops/main_branch.py")
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    kernels = {"old": hb.load_old_main_branch(a.old)._sparse_attn_fwd_kernel, "new": mb._sparse_attn_fwd_kernel}
    points = [("decode_64x128K", [1] * 64, [131072] * 64), ("chunk1024_after32K", [1024], [32768 + 1024])]
    res = dict(env=dict(card=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__),
               points=[])
    for name, q_lens, seq_lens in points:
        prob = hb.make_big_problem(q_lens, seq_lens, dtype=torch.bfloat16, seed=1)
        args = prob.attention_args(ops.index_topk(**prob.index_args()))
        outs, times = {}, {k: [] for k in kernels}
        for r in range(a.rounds):
            for k, fn in kernels.items():
                mb._sparse_attn_fwd_kernel = fn
                try:
                    if r == 0:
                        outs[k] = mb.sparse_attention(**args, method="q_outer").clone()
                    times[k].append(hb.bench_graph_ms(lambda: mb.sparse_attention(**args, method="q_outer")))
                finally:
                    mb._sparse_attn_fwd_kernel = kernels["new"]
        pt = dict(point=name, us={k: 1000 * statistics.median(v) for k, v in times.items()},
                  rounds_ms=times, bitwise_equal=bool(torch.equal(outs["old"], outs["new"])))
        print(pt, flush=True)
        res["points"].append(pt)
        prob = args = outs = None
        torch.cuda.empty_cache()
    (Path(os.environ.get("OUT", ".")) / "qouter_ab.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
