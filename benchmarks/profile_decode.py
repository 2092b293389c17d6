"""Kernel-level breakdown of one decode step (torch.profiler), and index-branch launch variants.

    python benchmarks/profile_decode.py

For batch 1 at 32K / 128K / 1M (M3 shapes, bf16): the CUDA time of every kernel of
MSADecodeWrapper.run(), then ops.index_topk with several split counts and finalize shapes, the
two kernels timed apart. Prints tables; writes nothing else.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

import msa_sgl  # noqa: E402
from harness import bench as hb  # noqa: E402
from msa_sgl import ops  # noqa: E402
from msa_sgl.ops import index_branch as ib  # noqa: E402

M3 = dict(num_q_heads=64, num_kv_heads=4, head_dim=128, index_dim=128)


def kernel_table(fn, reps=20):
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            fn()
        torch.cuda.synchronize()
    rows = []
    for e in prof.key_averages():
        if e.device_type.name == "CUDA" or getattr(e, "self_device_time_total", 0) > 0:
            t = getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)
            if t > 0:
                rows.append((e.key[:60], t / reps, e.count // reps))
    rows.sort(key=lambda r: -r[1])
    return rows


def main():
    print(torch.cuda.get_device_name(), torch.__version__, flush=True)
    for ctx in (32768, 131072, 1 << 20):
        prob = hb.make_big_problem([1], [ctx], dtype=torch.bfloat16, seed=ctx)
        a = prob.args
        w = msa_sgl.MSADecodeWrapper(prob.config, **M3, max_batch=1, max_pages=a["page_table"].shape[1],
                                     max_q_len=1, dtype=torch.bfloat16, device="cuda")
        w.plan(a["page_table"], a["cu_seqlens_q"], a["seq_lens_k"], total_q=1)
        print(f"\n== batch 1 ctx {ctx}: plan {w._planned[2]}", flush=True)
        for name, us, n in kernel_table(lambda: w.run(a["q"], a["k_cache"], a["v_cache"], a["q_idx"], a["k_idx_cache"])):
            print(f"  {name:<60} {us:8.2f} us x{n}")
        print(f"  step (graph replay): {hb.bench_graph_ms(lambda: w.run(a['q'], a['k_cache'], a['v_cache'], a['q_idx'], a['k_idx_cache'])) * 1e3:.1f} us")
        ia = prob.index_args()
        for n_split in (64, 128, 256):
            for chunk in (1024,):
                ib._CHUNK_CANDIDATES = chunk
                for nw in (4,):
                    try:
                        t = hb.bench_graph_ms(lambda: ops.index_topk(**ia, n_split=n_split, num_warps=nw)) * 1e3
                        ks = kernel_table(lambda: ops.index_topk(**ia, n_split=n_split, num_warps=nw), reps=10)
                        parts = " ".join(f"{k.split('(')[0][-22:]}={us:.1f}" for k, us, _ in ks if "index" in k)
                        print(f"  index n_split={n_split:>3} chunk={chunk:>4} warps={nw}: {t:6.1f} us  [{parts}]", flush=True)
                    except Exception as e:  # noqa: BLE001
                        print(f"  index n_split={n_split} chunk={chunk} warps={nw}: FAILED {e!r}"[:300])
        ib._CHUNK_CANDIDATES = 1024


if __name__ == "__main__":
    main()
