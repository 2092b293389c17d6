"""Kernel-level profile of one prefill call (index + main branch) with torch.profiler.

    python benchmarks/profile_stages.py [P C [method]]

Prints the CUDA kernels sorted by total time: which stage, and which torch op of the device-built
metadata, costs what.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from harness import bench as hb  # noqa: E402
from msa_sgl import ops  # noqa: E402


def main():
    P = int(sys.argv[1]) if len(sys.argv) > 1 else 114688
    C = int(sys.argv[2]) if len(sys.argv) > 2 else 16384
    method = sys.argv[3] if len(sys.argv) > 3 else "kv_outer"
    prob = hb.make_big_problem([C], [P + C], dtype=torch.bfloat16)
    ia = prob.index_args()
    topk = ops.index_topk(**ia)
    aa = prob.attention_args(topk)
    for _ in range(3):
        ops.index_topk(**ia)
        ops.sparse_attention(**aa, method=method)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            ops.index_topk(**ia)
            ops.sparse_attention(**aa, method=method)
        torch.cuda.synchronize()
    print(f"P={P} C={C} {method}: per-call times are totals / 5")
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25, max_name_column_width=70))


if __name__ == "__main__":
    main()
