"""How long one program waits for one K block it has not read before, by where the block lies.

    python benchmarks/tlb_probe.py          # writes $OUT/tlb_probe.json and prints a table

NOTES.md v16 found ~2.8 us (5573 cycles) between a batch-1 slot program knowing its page id and
having K and the scores, 2-3x what one DRAM round trip and 32 KB should take, whatever the load
form (whole block, sub-blocks, half a block a program, TMA: v16, v17). The K/V pages of a step are
random within a 1-2 GB pool; the open guess is the address translation of a page nobody touched
lately. One program (4 warps, as the slot kernel at batch 1) reads a K block's slice of one group
(128 rows of 128 bf16, rows 1 KB apart, as the cache's [pages, 128, 4, 128] layout) at a series of
offsets, one at a time, and stamps %globaltimer before the load and after the block's sum:
* cold: a fresh 2 MB region of a 2 GB pool each time, L2 flushed before the launch;
* same_region: 256 KB past the previous probe's block, in its 2 MB region (translation touched by
  the previous probe; the lines were not read before);
* l2_hot: the previous probe's block again (its lines in L2);
* small_pool: fresh blocks of a 64 MB pool whose every 2 MB region was read earlier in the launch
  (32 probes before).
Also: cold_rows{1,8,32,64} (256 B to 16 KB a probe), cold_64k / l2_hot_64k (256 rows), cold_w8 (8 warps).
Caveat: ptxas compiles the probe's in-thread sum with only ~3 of a thread's 16-byte loads in flight
(the adds consume them in order), so above ~8 KB a probe's time is the probe's own serialization,
not what a kernel issuing all of its loads first (the slot kernel does) would wait; the cases
compare with one another, not with the slot kernel. Results: NOTES.md v17.
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

import torch
import triton
import triton.language as tl


@triton.jit
def _probe_kernel(X, OFFS, OUT, n, ROWS: tl.constexpr, COLS: tl.constexpr, ROW_STRIDE: tl.constexpr):
    o_r = tl.arange(0, ROWS)
    o_c = tl.arange(0, COLS)
    acc = tl.zeros([], dtype=tl.float32)
    for i in range(n):
        off = tl.load(OFFS + i) + (acc * 0.0).to(tl.int64)  # after the previous probe's sum
        t0 = tl.zeros([], dtype=tl.int64)
        if off != -1234567:  # a branch on off: the timer read cannot move above its load
            t0 = tl.inline_asm_elementwise("mov.u64 $0, %globaltimer;", "=l", [], dtype=tl.int64, is_pure=False,
                                           pack=1)
        off = tl.multiple_of(off + (t0 >> 62), 1024)  # + 0 (the timer is below 2^62 ns): the load follows the stamp
        x = tl.load(X + off + o_r[:, None] * ROW_STRIDE + o_c[None, :])
        s = tl.sum(tl.reshape(x.to(tl.float32), [ROWS * COLS], can_reorder=True), axis=0)
        t1 = tl.zeros([], dtype=tl.int64)
        if s != -1234567.0:  # after the block's sum
            t1 = tl.inline_asm_elementwise("mov.u64 $0, %globaltimer;", "=l", [], dtype=tl.int64, is_pure=False,
                                           pack=1)
        tl.store(OUT + i, t1 - t0)
        acc += s


ROWS, COLS, ROW_STRIDE = 128, 128, 512  # one group of a [pages, 128, 4, 128] bf16 K cache page
REGION = (2 << 20) // 2  # elements of a 2 MB region


def _run(x, offs, flush, rows=ROWS, warps=4):
    out = torch.zeros(len(offs), dtype=torch.int64, device=x.device)
    o = torch.tensor(offs, dtype=torch.int64, device=x.device)
    flush.sum()  # L2 refilled with clean lines (a memset would leave dirty ones to write back)
    torch.cuda.synchronize()
    _probe_kernel[(1,)](x, o, out, len(offs), ROWS=rows, COLS=COLS, ROW_STRIDE=ROW_STRIDE, num_warps=warps,
                        num_stages=1)
    torch.cuda.synchronize()
    return out.tolist()


def main():
    dev = torch.device("cuda")
    g = torch.Generator().manual_seed(0)
    pool = torch.randn(1 << 30, dtype=torch.bfloat16, device=dev)  # 2 GB
    flush = torch.ones(64 << 20, dtype=torch.float32, device=dev)  # 256 MB: past the 50 MB L2
    n_reg = pool.numel() // REGION
    n = 64
    regions = torch.randperm(n_reg, generator=g)[: 2 * n].tolist()
    res = {}
    for rnd in range(3):
        cold = [r * REGION for r in regions[:n]]
        res.setdefault("cold", []).extend(_run(pool, cold, flush))
        pairs = []
        for r in regions[n: 2 * n]:
            pairs += [r * REGION, r * REGION + 128 * 1024]  # 256 KB on, same region
        t = _run(pool, pairs, flush)
        res.setdefault("same_region_first", []).extend(t[0::2])
        res.setdefault("same_region", []).extend(t[1::2])
        hot = []
        for r in regions[:n]:
            hot += [r * REGION + 256 * 1024, r * REGION + 256 * 1024]
        t = _run(pool, hot, flush)
        res.setdefault("l2_hot", []).extend(t[1::2])
        small = 32  # 64 MB: 32 regions, each read once, then fresh blocks of each in the same launch
        seq = [r * REGION for r in range(small)] + [r * REGION + (1 + (r % 7)) * 128 * 1024 for r in range(small)]
        res.setdefault("small_pool", []).extend(_run(pool, seq, flush)[small:])
        # 64 KB a probe (256 rows: K and V of a block, as the slot kernel loads them)
        res.setdefault("cold_64k", []).extend(_run(pool, [r * REGION for r in regions[n: 2 * n]], flush, rows=256))
        t = _run(pool, hot, flush, rows=256)
        res.setdefault("l2_hot_64k", []).extend(t[1::2])
        for rows in (1, 8, 32, 64):  # bytes a probe: 256 B .. 16 KB
            res.setdefault(f"cold_rows{rows}", []).extend(
                _run(pool, [r * REGION + 512 * 1024 for r in regions[: n]], flush, rows=rows))
        res.setdefault("cold_w8", []).extend(_run(pool, [r * REGION + 768 * 1024 for r in regions[: n]], flush,
                                                  warps=8))
        regions = regions[n:] + regions[:n]
    table = {k: dict(median_ns=statistics.median(v), p10=sorted(v)[len(v) // 10], p90=sorted(v)[9 * len(v) // 10],
                     n=len(v)) for k, v in res.items()}
    env = dict(card=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__)
    for k, v in table.items():
        print(f"{k:18s} median {v['median_ns']:6.0f} ns  p10 {v['p10']:6.0f}  p90 {v['p90']:6.0f}  (n={v['n']})")
    (Path(os.environ.get("OUT", ".")) / "tlb_probe.json").write_text(json.dumps(dict(env=env, table=table, raw=res)))


if __name__ == "__main__":
    main()
