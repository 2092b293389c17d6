"""What the decode kernels compile to on Hopper, without a GPU (benchmarks/NOTES.md v13b).

    python benchmarks/sass_loop.py          # TRITON_INTERPRET unset; Triton with its NVIDIA back end

For the decode index scan (M3 decode tile: 16 rows, 4 warps, the decode num_stages, operands
16-byte aligned as the JIT sees them) with bf16 and 8-bit keys: the MMA instructions in the PTX
and the SASS instruction mix of the block loop (the body of the longest backward branch).
For the split form's slot kernel (with and without the index merge, SELECT) at 4, 8 and 16
warps, and the prefill KV-outer partial kernel (128- and 256-row tiles): registers and spills
from ``ptxas -v``. Uses the signatures of
tests/unit/_hopper_compile.py and the ptxas / nvdisasm bundled with Triton.
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "unit"))

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402

import _hopper_compile as hc  # noqa: E402

TARGET = GPUTarget("cuda", 90, 32)


def _loop_mix(sass: str):
    """Instruction counts of the longest loop: from a label to the last branch back to it."""
    lines = sass.splitlines()
    labels = {m.group(1): i for i, line in enumerate(lines) if (m := re.match(r"^(LBB\d+):", line.strip()))}
    best = None
    for i, line in enumerate(lines):
        m = re.search(r"BRA (LBB\d+);", line)
        if m and m.group(1) in labels and labels[m.group(1)] < i:
            span = (labels[m.group(1)], i)
            if best is None or span[1] - span[0] > best[1] - best[0]:
                best = span
    if best is None:
        return 0, {}
    ops = collections.Counter()
    for line in lines[best[0] + 1: best[1] + 1]:
        parts = line.split("\t")
        if len(parts) < 2:
            continue
        op = re.sub(r"^@!?U?P\w+ ", "", parts[1].strip()).split(" ")[0].split(".")[0].rstrip(";")
        if op:
            ops[op] += 1
    return sum(ops.values()), ops


def scan():
    """The decode scan's block loop, bf16 and 8-bit keys, 16-row tiles (v13b), and the shared
    memory and registers of both score forms (KEYS_M: keys x queries) at 16 / 32 / 64 rows."""
    for dtype in ("bf16", "fp8e4nv"):
        for block_t in (4, 8, 16):  # x 4 groups: 16 / 32 / 64 rows
            for keys_m in (0, 1):
                k = hc.compile_scan(dtype, keys_m, BLOCK_T=block_t)
                mma = collections.Counter(re.findall(r"(wgmma\.mma_async[\w.]*|mma\.sync[\w.]*)", k.asm["ptx"]))
                n, ops = _loop_mix(k.asm["sass"])
                print(f"index scan, {dtype} keys, {block_t * 4} rows, KEYS_M={keys_m}: MMA {dict(mma)}; "
                      f"shared {k.metadata.shared} B | {_ptxas_info(k)}")
                if block_t == 4:
                    print(f"  block loop: {n} SASS instructions; " + ", ".join(f"{o} {c}" for o, c in ops.most_common(14)))


def _ptxas_info(kernel) -> str:
    """Registers and spills of a compiled kernel, from ``ptxas -v`` on its PTX."""
    ptxas = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
    with tempfile.TemporaryDirectory() as d:
        ptx = os.path.join(d, "k.ptx")
        Path(ptx).write_text(kernel.asm["ptx"])
        r = subprocess.run([str(ptxas), "-v", "-arch=sm_90a", ptx, "-o", os.path.join(d, "k.cubin")],
                           capture_output=True, text=True)
    return " | ".join(line.split("info    : ")[-1].strip() for line in r.stderr.splitlines()
                      if "registers" in line or "spill" in line)


def slot():
    """The split form's slot kernel: whole blocks (batch 1-2), merging the index lists or not, at
    4 / 8 / 16 warps; and in sub-blocks of 64 keys at its stages (batch >= 3; 4 warps shipped)."""
    for select in (0, 1):
        for warps in (4, 8, 16):
            const = dict(hc.SLOT_CONST, USE_PDL=1, SELECT=select)
            k = triton.compile(hc.source(hc.mb._slot_partial_kernel, hc.SLOT_SIG, const), target=TARGET,
                               options={"launch_pdl": True, "num_warps": warps})
            print(f"slot kernel SELECT={select}, {warps} warps: {_ptxas_info(k)}")
    for warps in (4, 8):
        const = dict(hc.SLOT_CONST, USE_PDL=1, SELECT=0, SUB=64)
        k = triton.compile(hc.source(hc.mb._slot_partial_kernel, hc.SLOT_SIG, const), target=TARGET,
                           options={"launch_pdl": True, "num_warps": warps, "num_stages": hc.mb._SLOT_STAGES})
        print(f"slot kernel SUB=64, {hc.mb._SLOT_STAGES} stages, {warps} warps: shared {k.metadata.shared} B | "
              f"{_ptxas_info(k)}")


def q_outer():
    """The query-outer form (decode at batch >= 33, short prefill chunks): whole blocks behind a
    branch per slot (SUB 0) and the pipelined loop of sub-blocks (v30), at the warps and stages
    qouter_ab.py measures (NOTES.md v30c)."""
    fn, sig, base = hc.KERNELS[-1]
    attrs = hc.aligned(sig, [n for n in sig if n.isupper() or n.startswith("stride")])
    for sub, warps, stages in ((0, 4, 3), (64, 4, 2), (64, 4, 3), (64, 4, 4), (64, 8, 3), (32, 4, 4), (128, 4, 2),
                               (128, 8, 2)):
        k = triton.compile(hc.source(fn, sig, dict(base, USE_PDL=1, SUB=sub), attrs), target=TARGET,
                           options={"launch_pdl": True, "num_warps": warps, "num_stages": stages})
        print(f"query-outer SUB={sub}, {warps} warps, {stages} stages: shared {k.metadata.shared} B, "
              f"cp.async {k.asm['ptx'].count('cp.async.')} | {_ptxas_info(k)}")


def kv_outer():
    """The prefill main branch's partial kernel at M3 shapes: 128-row tiles (8 query tokens x
    16 heads, the shipped launch: 8 warps) and 256-row tiles."""
    from msa_sgl.ops import main_branch as mb

    sig = {"Q": "*bf16", "K": "*bf16", "V": "*bf16", "TILE_E": "*i32", "TILE_INFO": "*i32", "O_PART": "*bf16",
           "LSE_PART": "*fp32", "qk_scale": "fp32", "row_lo": "i32", "stride_qt": "i32", "stride_qh": "i32",
           "stride_kp": "i32", "stride_kb": "i32", "stride_kh": "i32", "stride_vp": "i32", "stride_vb": "i32",
           "stride_vh": "i32"}
    attrs = hc.aligned(sig, [n for n in sig if n not in ("qk_scale", "row_lo")])
    for mq, warps in ((8, 8), (8, 4), (16, 8), (16, 16)):
        c = dict(NG=2, G=16, G_P=16, MQ=mq, D=128, D_P=128, BLOCK=128, TOPK=16, IEEE=False)
        k = triton.compile(hc.source(mb._kv_outer_partial_kernel, sig, c, attrs), target=TARGET,
                           options={"num_warps": warps})
        print(f"KV-outer partial, {mq * 16}-row tiles, {warps} warps: shared {k.metadata.shared} B | "
              f"{_ptxas_info(k)}")


if __name__ == "__main__":
    if os.environ.get("TRITON_INTERPRET") == "1":
        sys.exit("run without TRITON_INTERPRET=1 (this compiles for sm_90)")
    print("triton", triton.__version__)
    scan()
    slot()
    q_outer()
    kv_outer()
