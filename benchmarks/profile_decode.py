"""Kernel-level breakdown of decode steps (torch.profiler), bf16 and 8-bit index keys.

    python benchmarks/profile_decode.py [--out FILE.json] [--kernels-from DIR] [--rotate] [--batch1]
                                        [--points BxCTX[xQ],...] [--hot] [--bf16-only]

For batch 1 at 32K / 128K / 1M, 1 x 128K with 8 query tokens and 8 x 1M (M3 shapes): the CUDA
time of every kernel of MSADecodeWrapper.run() launched without PDL (with PDL a kernel's time
would include its wait for the previous one), and the step as a CUDA-graph replay with and
without PDL. Prints a table per point; ``--out`` writes the numbers as JSON.
``--rotate``: the step cycles over copies of the problem (>= 200 MB of index keys in all), so no
kernel finds its inputs in L2 from the previous step, and each point also times a device-to-device
copy of as many bytes as its index keys, rotated the same way (GB/s counting read + write, as the
card's copy rate): what a kernel that streams those bytes can reach at that size. ``--batch1``:
the batch-1, one-token points only. ``--hot``: the kernel table is taken a second time with each
call queued behind the suite's ~10 ms matmul lead (test_bench_kernels._lead), 50 in a row, so the
kernels run at the clock of a card under sustained tensor-core load (NOTES.md v29e-f), and the
step is also timed by events behind the lead; the lead's own kernels are left out of the table.
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
import test_bench_kernels as tbk  # noqa: E402  (the suite's matmul lead)

M3 = dict(num_q_heads=64, num_kv_heads=4, head_dim=128, index_dim=128)
POINTS = ((1, 32768, 1), (1, 131072, 1), (1, 1 << 20, 1), (1, 131072, 8), (8, 1 << 20, 1))


def _lead_names():
    """Names of the kernels the matmul lead launches (left out of --hot tables)."""
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        tbk._lead()
        torch.cuda.synchronize()
    return {e.key[:60] for e in prof.key_averages()}


def kernel_table(fn, reps=20, lead=False):
    """(kernel name, mean us per call, launches per call), longest first. ``lead``: each call
    behind the suite's matmul lead (30 unprofiled rounds first, so the clock settles, then ``reps``)."""
    fn()
    torch.cuda.synchronize()
    skip = _lead_names() if lead else set()
    if lead:
        for _ in range(30):
            tbk._lead()
            fn()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            if lead:
                tbk._lead()
            fn()
        torch.cuda.synchronize()
    rows = []
    for e in prof.key_averages():
        t = getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)
        if t > 0 and e.key[:60] not in skip:
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


def hot_step_us(fn, rounds=50):
    """Median event time of ``fn()`` behind the matmul lead, ``rounds`` in a row (the suite's event column)."""
    times, _ = tbk.lead_event_rounds(fn, rounds)
    return sorted(times)[len(times) // 2] * 1e3


def point(batch, ctx, q_len, fp8, rotate=False, hot=False):
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
            if hot:
                rec["kernels_hot"] = [dict(name=n, us=us / copies, n=c // copies)
                                      for n, us, c in kernel_table(run, lead=True)]
                rec["step_us_events_hot"] = hot_step_us(run) / copies
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
    hot_us = {k["name"]: k["us"] for k in rec.get("kernels_hot", [])}
    for k in rec["kernels"]:
        extra = f"   behind the lead {hot_us[k['name']]:8.2f} us" if k["name"] in hot_us else ""
        print(f"  {k['name']:<60} {k['us']:8.2f} us x{k['n']}{extra}", flush=True)
    print(f"  sum of kernels {sum(k['us'] for k in rec['kernels']):.1f} us"
          + (f", behind the lead {sum(hot_us.values()):.1f} us; step by events behind the lead "
             f"{rec['step_us_events_hot']:.1f} us" if hot else ""), flush=True)
    return rec


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    ap.add_argument("--kernels-from", help="a directory holding another checkout's msa_sgl package (A/B)")
    ap.add_argument("--rotate", action="store_true", help="cycle over copies of each problem (no L2 reuse)")
    ap.add_argument("--batch1", action="store_true", help="batch-1, one-token points only")
    ap.add_argument("--points", help="BxCTX[xQ],... instead of the default points")
    ap.add_argument("--hot", action="store_true", help="also behind the suite's matmul lead (sustained load)")
    ap.add_argument("--bf16-only", action="store_true", help="bf16 index keys only")
    args = ap.parse_args()
    print(torch.cuda.get_device_name(), torch.__version__, "msa_sgl from", Path(msa_sgl.__file__).parent, flush=True)
    recs = []
    points = POINTS
    if args.points:
        points = [tuple(int(x) for x in (p.split("x") + ["1"])[:3]) for p in args.points.split(",")]
    for fp8 in (False,) if args.bf16_only else (False, True):
        for batch, ctx, q_len in points:
            if args.batch1 and (batch, q_len) != (1, 1):
                continue
            recs.append(point(batch, ctx, q_len, fp8, args.rotate, args.hot))
    if args.out:
        Path(args.out).write_text(json.dumps(dict(device=torch.cuda.get_device_name(), torch=torch.__version__,
                                                  points=recs), indent=1))


if __name__ == "__main__":
    main()
