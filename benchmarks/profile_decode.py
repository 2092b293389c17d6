"""Kernel-level breakdown of decode steps (torch.profiler), bf16 and 8-bit index keys.

    python benchmarks/profile_decode.py [--out FILE.json] [--kernels-from DIR] [--rotate] [--batch1]

For batch 1 at 32K / 128K / 1M, 1 x 128K with 8 query tokens and 8 x 1M (M3 shapes): the CUDA
time of every kernel of MSADecodeWrapper.run() launched without PDL (with PDL a kernel's time
would include its wait for the previous one), and the step as a CUDA-graph replay with and
without PDL. Prints a table per point; ``--out`` writes the numbers as JSON.
``--rotate``: the step cycles over copies of the problem (>= 200 MB of index keys in all), so no
kernel finds its inputs in L2 from the previous step, and each point also times a device-to-device
copy of as many bytes as its index keys, rotated the same way (GB/s counting read + write, as the
card's copy rate): what a kernel that streams those bytes can reach at that size. ``--batch1``:
the batch-1, one-token points only.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
if "--kernels-from" in sys.argv:  # msa_sgl from another checkout (git archive REV msa_sgl | tar -x -C DIR)
    sys.path.insert(0, sys.argv[sys.argv.index("--kernels-from") + 1])

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

import msa_sgl  # noqa: E402
from harness import bench as hb  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

M3 = dict(num_q_heads=64, num_kv_heads=4, head_dim=128, index_dim=128)
POINTS = ((1, 32768, 1), (1, 131072, 1), (1, 1 << 20, 1), (1, 131072, 8), (8, 1 << 20, 1))


def kernel_table(fn, reps=20):
    """(kernel name, mean us per call, launches per call), longest first."""
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            fn()
        torch.cuda.synchronize()
    rows = []
    for e in prof.key_averages():
        t = getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)
        if t > 0:
            rows.append((e.key[:60], t / reps, e.count // reps))
    rows.sort(key=lambda r: -r[1])
    return rows


def copy_us(nbytes, copies):
    """Kernel time of one device-to-device copy of ``nbytes``, cycling over ``copies`` buffer pairs."""
    src = [torch.empty(nbytes, dtype=torch.uint8, device="cuda") for _ in range(copies)]
    dst = [torch.empty_like(x) for x in src]

    def run():
        for d, x in zip(dst, src):
            d.copy_(x)

    return sum(us for _, us, _ in kernel_table(run)) / copies  # kernel_table: time per call (all copies)


def point(batch, ctx, q_len, fp8, rotate=False):
    key_bytes = batch * ctx * M3["index_dim"] * (1 if fp8 else 2)
    copies = max(1, math.ceil(200e6 / key_bytes)) if rotate else 1
    probs = [hb.make_big_problem([q_len] * batch, [ctx] * batch, dtype=torch.bfloat16, seed=ctx + batch + i)
             for i in range(copies)]
    kidx = [hb.quantized_index_keys(p) if fp8 else (p.args["k_idx_cache"], None) for p in probs]
    rec = dict(batch=batch, ctx=ctx, q_len=q_len, keys="fp8" if fp8 else "bf16", copies=copies,
               key_bytes=key_bytes)
    for pdl in (False, True):
        ws = []
        for p in probs:
            a = p.args
            w = msa_sgl.MSADecodeWrapper(p.config, **M3, max_batch=batch, max_pages=a["page_table"].shape[1],
                                         max_q_len=q_len, dtype=torch.bfloat16, device="cuda", pdl=pdl,
                                         index_fp8=fp8)
            w.plan(a["page_table"], a["cu_seqlens_q"], a["seq_lens_k"], total_q=batch * q_len)
            ws.append(w)

        def run():
            for w, p, (k, sc) in zip(ws, probs, kidx):
                a = p.args
                w.run(a["q"], a["k_cache"], a["v_cache"], a["q_idx"], k, k_idx_scale=sc)

        rec["step_us_pdl" if pdl else "step_us"] = hb.bench_graph_ms(run) * 1e3 / copies
        if not pdl:
            rec["plan"] = str(ws[0].step_plan.index)
            rec["kernels"] = [dict(name=n, us=us / copies, n=c // copies) for n, us, c in kernel_table(run)]
    if rotate:
        rec["copy_us"] = copy_us(key_bytes, copies)
        scan = max(rec["kernels"], key=lambda k: k["us"] if "index_partial" in k["name"] else -1)
        rec["scan_gbps"] = key_bytes / scan["us"] / 1e3
        rec["copy_gbps_same_bytes"] = 2 * key_bytes / rec["copy_us"] / 1e3
    print(f"\n== batch {batch} ctx {ctx} q {q_len} keys {rec['keys']}: step {rec['step_us']:.1f} us, "
          f"with PDL {rec['step_us_pdl']:.1f} us; {rec['plan']}", flush=True)
    if rotate:
        print(f"  index keys {key_bytes / 1e6:.1f} MB over {copies} copies: scan {rec['scan_gbps']:.0f} GB/s; "
              f"a copy of as many bytes {rec['copy_us']:.2f} us = {rec['copy_gbps_same_bytes']:.0f} GB/s "
              f"(read + write)", flush=True)
    for k in rec["kernels"]:
        print(f"  {k['name']:<60} {k['us']:8.2f} us x{k['n']}", flush=True)
    print(f"  sum of kernels {sum(k['us'] for k in rec['kernels']):.1f} us", flush=True)
    return rec


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    ap.add_argument("--kernels-from", help="a directory holding another checkout's msa_sgl package (A/B)")
    ap.add_argument("--rotate", action="store_true", help="cycle over copies of each problem (no L2 reuse)")
    ap.add_argument("--batch1", action="store_true", help="batch-1, one-token points only")
    args = ap.parse_args()
    print(torch.cuda.get_device_name(), torch.__version__, "msa_sgl from", Path(msa_sgl.__file__).parent, flush=True)
    recs = []
    for fp8 in (False, True):
        for batch, ctx, q_len in POINTS:
            if args.batch1 and (batch, q_len) != (1, 1):
                continue
            recs.append(point(batch, ctx, q_len, fp8, args.rotate))
    if args.out:
        Path(args.out).write_text(json.dumps(dict(device=torch.cuda.get_device_name(), torch=torch.__version__,
                                                  points=recs), indent=1))


if __name__ == "__main__":
    main()
