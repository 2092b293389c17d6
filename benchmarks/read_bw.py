"""The card's read-only DRAM rate: how far a streaming scan can go past the copy rate.

    python benchmarks/read_bw.py        # writes $OUT/read_bw.json

Issue 4 measures the index scan against the device-to-device copy rate (read + write). A scan
only reads; this times Triton kernels that read one tensor in contiguous chunks and reduce it
(max, so nothing is dead code) at the 1 x 1M decode scan's sizes (bf16 keys 268 MB, 8-bit keys
134 MB), over launch shapes (programs per SM, warps, chunk size, stages), beside the copy rate
and torch's own amax. GB/s counts the bytes read once; medians of do_bench.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import triton  # noqa: E402
import triton.language as tl  # noqa: E402

import gpu_run  # noqa: E402
from harness import bench as hb  # noqa: E402


@triton.jit
def _read_max_kernel(X, OUT, n_chunks, chunks_per_prog, CHUNK: tl.constexpr):
    """Program i reduces chunks [i * chunks_per_prog, ...) of CHUNK int32 words to one max."""
    pid = tl.program_id(0)
    o = tl.arange(0, CHUNK)
    acc = tl.zeros([CHUNK], dtype=tl.int32)
    c_lo = pid * chunks_per_prog
    c_hi = tl.minimum(c_lo + chunks_per_prog, n_chunks)
    for c in range(c_lo, c_hi):
        acc = tl.maximum(acc, tl.load(X + c.to(tl.int64) * CHUNK + o))
    tl.store(OUT + pid, tl.max(acc, axis=0))


def _copy_gbps():
    src = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = hb.bench_ms(lambda: dst.copy_(src), warmup=5, rep=50)
    return 2 * src.numel() / ms / 1e6


def _reads(nbytes, sms):
    x = torch.randint(-2**31, 2**31 - 1, (nbytes // 4,), dtype=torch.int32, device="cuda")
    out = torch.empty(4096, dtype=torch.int32, device="cuda")
    ms = hb.bench_ms(lambda: x.amax())
    rows = [dict(bytes=nbytes, what="torch.amax", us=ms * 1e3, gbps=nbytes / ms / 1e6)]
    for chunk_kb in (8, 16, 32):
        chunk = chunk_kb * 256  # int32 words
        n_chunks = nbytes // (chunk * 4)
        for per_sm in (1, 2, 4, 8):
            progs = per_sm * sms
            cpp = triton.cdiv(n_chunks, progs)
            for warps in (4, 8):
                for stages in (2, 4):
                    def fn():
                        _read_max_kernel[(progs,)](x, out, n_chunks, cpp, CHUNK=chunk, num_warps=warps,
                                                   num_stages=stages)
                    ms = hb.bench_ms(fn)
                    rows.append(dict(bytes=nbytes, what="triton", chunk_kb=chunk_kb, programs=progs, warps=warps,
                                     stages=stages, us=ms * 1e3, gbps=nbytes / ms / 1e6))
    return rows


def main():
    gpu_run.env_info()
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    res = dict(env=gpu_run.RESULTS["env"], rows=[])
    try:
        res["copy_gbps_read_plus_write"] = _copy_gbps()
        for nbytes in (268435456, 134217728):
            res["rows"] += _reads(nbytes, sms)
            gpu_run.log("best", max((r for r in res["rows"] if r["bytes"] == nbytes), key=lambda r: r["gbps"]))
            gpu_run.free()
    finally:
        (Path(os.environ.get("OUT", ".")) / "read_bw.json").write_text(json.dumps(res, indent=1))
        print(f"copy (read + write) {res.get('copy_gbps_read_plus_write', 0):.0f} GB/s")
        for nbytes in (268435456, 134217728):
            rows = sorted((r for r in res["rows"] if r["bytes"] == nbytes), key=lambda r: -r["gbps"])[:6]
            for r in rows:
                print(nbytes, {k: (round(v, 1) if isinstance(v, float) else v) for k, v in r.items() if k != "bytes"})


if __name__ == "__main__":
    main()
