"""Compiles the decode chain's kernels for sm_90 (Hopper) without a GPU and prints, per kernel and
PDL mode, the griddepcontrol instructions in the PTX as JSON lines. Run in a process without
TRITON_INTERPRET (tests/unit/test_hopper_compile.py does that): Triton's compiler front end and
NVIDIA back end run on any machine; only launching needs the GPU."""

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from msa_sgl.ops import index_branch as ib  # noqa: E402
from msa_sgl.ops import main_branch as mb  # noqa: E402

I32 = "i32"
BLOCK_ARGS = ["num_pages", "qk_scale", "stride_qt", "stride_qh", "stride_kp", "stride_kb", "stride_kh", "stride_vp",
              "stride_vb", "stride_vh", "stride_it", "stride_ih", "stride_pt_b"]
BLOCK_IN = {"Q": "*bf16", "K": "*bf16", "V": "*bf16", "TOPK_IDX": "*i32", "PAGE_TABLE": "*i32", "SEQ_LENS": "*i32",
            "CU_SEQLENS": "*i32", "TOKEN_REQ": "*i32"}  # int32 rows' requests (call_rows, the wrappers)


def _scalars(names):
    return {k: ("fp32" if k == "qk_scale" else I32) for k in names}


# the slot kernel's constexprs for merging the index lists (1 x 1M, bf16 keys: 128 lists)
SELECT_CONST = dict(BLOCK_T=1, NS_C=128, LOG2_NS_C=7, TOPK_P=16, N_INIT=0, N_LOCAL=1, K_FREE=15, KF=16, LOG2_KF=4,
                    SPLIT_FLOOR=8, SPLIT_PIECES=64)

# the split form's slot kernel: its signature and M3 constexprs (SELECT and NS_H apart)
SLOT_SIG = {**BLOCK_IN, "O_PART": "*fp32", "LSE_PART": "*fp32", **_scalars(BLOCK_ARGS), "IN_KEY": "*i64",
            "n_split": I32}
SLOT_CONST = dict(HKV=4, G=16, G_P=16, D=128, D_P=128, BLOCK=128, TOPK=16, IEEE=False, **SELECT_CONST)

# M3 decode shapes: (kernel, signature, constexprs without USE_PDL)
KERNELS = [
    (ib._index_partial_kernel,
     {"Q": "*bf16", "K": "*bf16", "K_SCALE": "*bf16", "PAGE_TABLE": "*i32", "SEQ_LENS": "*i32", "CU_SEQLENS": "*i32",
      "TILE_CUM": "*i32", "OUT_KEY": "*i64", **_scalars(["batch", "num_pages", "total_q", "stride_qt", "stride_qh",
                                                        "stride_kp", "stride_kb", "stride_pt_b", "n_split"])},
     dict(HKV=4, HKV_P=4, BLOCK_T=4, D=128, D_P=128, BLOCK=128, N_INIT=0, N_LOCAL=1, K_FREE=15, KF=16,
          SEARCH_STEPS=1, IEEE=False, FP8=False, Q8=False, SPLIT_FLOOR=8, SPLIT_PIECES=64, SCALE_AHEAD=0, KEYS_M=0)),
    (ib._index_finalize_kernel,
     {"IN_KEY": "*i64", "OUT": "*i32", "TOKEN_REQ": "*i32", "SEQ_LENS": "*i32", "CU_SEQLENS": "*i32",
      "total_rows": I32, "n_split": I32},
     dict(HKV=4, BLOCK_T=4, BLOCK_R=2, NS_C=64, LOG2_NS_C=6, BLOCK=128, TOPK=16, TOPK_P=16, N_INIT=0, N_LOCAL=1, K_FREE=15,
          KF=16, LOG2_KF=4, SPLIT_FLOOR=8, SPLIT_PIECES=64)),
    (mb._slot_partial_kernel, SLOT_SIG, dict(SLOT_CONST, SELECT=0)),
    # merging the index lists itself (the decode wrapper's split form)
    (mb._slot_partial_kernel, SLOT_SIG, dict(SLOT_CONST, SELECT=1)),
    # and the lists' heads first (8-bit keys at 1 x 1M: 256 lists)
    (mb._slot_partial_kernel, SLOT_SIG, dict(SLOT_CONST, SELECT=1, NS_H=256)),
    (mb._merge_heads_kernel,
     {"O_PART": "*fp32", "LSE_PART": "*fp32", "OUT": "*bf16", "LSE": "*fp32", "stride_ot": I32, "stride_oh": I32},
     dict(HQ=64, G=16, D=128, D_P=128, TOPK=16, TOPK_P=16)),
    (mb._sparse_attn_fwd_kernel,
     {**BLOCK_IN, "OUT": "*bf16", "LSE": "*fp32", **_scalars(BLOCK_ARGS + ["stride_ot", "stride_oh"])},
     dict(G=16, G_P=16, D=128, D_P=128, BLOCK=128, TOPK=16, IEEE=False, SUB=mb._Q_OUTER_SUB)),
]


_ALIGNED = ("Q", "K", "K_SCALE", "PAGE_TABLE", "SEQ_LENS", "CU_SEQLENS", "TILE_CUM", "OUT_KEY", "stride_qt", "stride_qh",
            "stride_kp", "stride_kb", "stride_pt_b")


def aligned(sig, names):
    """Compile attributes marking the arguments ``names`` of ``sig`` 16-byte aligned, as the JIT
    specializes pointers and strides that are."""
    order = list(sig)  # the arguments come first in a kernel's signature, constexprs after
    return {(order.index(n),): [["tt.divisibility", 16]] for n in names}


def source(fn, sig, const, attrs=None):
    """ASTSource of ``fn`` with ``sig``'s arguments and the ``const`` constexprs, plus every other
    constexpr at its default (Triton 3.8's ASTSource needs each one named; 3.6 fills them in)."""
    c = {p.name: p.default for p in fn.params if p.is_constexpr and p.has_default and p.name not in const}
    c.update(const)
    s = dict(sig, **{k: "constexpr" for k in c})
    return ASTSource(fn, s, c, attrs) if attrs is not None else ASTSource(fn, s, c)


def compile_scan(dtype="bf16", keys_m=0, num_stages=None, **const):
    """The index scan at M3 decode shapes (16 rows: 1 token x 4 groups, padded; ``const``
    overrides constexprs, e.g. BLOCK_T) compiled as the JIT does: pointers and strides known
    16-aligned, the decode tiles' warps and num_stages (``num_stages`` overrides). ``dtype`` of
    the keys: "bf16", or "fp8e4nv" with e4m3 queries and the scales prefetched, as decode tiles
    take 8-bit keys; ``keys_m``: the keys-x-queries score form."""
    fn, sig, base = KERNELS[0]
    fp8 = dtype != "bf16"
    c = {**base, "USE_PDL": 0, "FP8": fp8, "Q8": fp8, "SCALE_AHEAD": int(fp8), "KEYS_M": keys_m, **const}
    s = dict(sig, K="*" + dtype, K_SCALE="*fp32")
    stages = ib._SHORT_TILE_STAGES if num_stages is None else num_stages
    return triton.compile(source(fn, s, c, aligned(s, _ALIGNED)), target=GPUTarget("cuda", 90, 32),
                          options={"num_warps": ib._SHORT_TILE_WARPS, "num_stages": stages})


def key_buffers():
    """How many key blocks the decode scan's loop keeps in shared memory (1: each block's load
    waits in full), at Triton's default num_stages and the decode one; both score forms with
    8-bit keys (keys x queries: what 8-bit decode tiles take)."""
    import re

    for dtype, keys_m in (("bf16", 0), ("fp8e4nv", 0), ("fp8e4nv", 1)):
        for stages in (3, ib._SHORT_TILE_STAGES):
            k = compile_scan(dtype, keys_m, num_stages=stages)
            bufs = [int(m) for m in re.findall(r"local_alloc : \(\) -> !ttg\.memdesc<(\d+)x128x128", k.asm["ttgir"])]
            print(json.dumps({"kernel": "index_partial_key_buffers" + ("_keys_m" if keys_m else ""), "dtype": dtype,
                              "num_stages": stages, "buffers": max(bufs, default=0)}), flush=True)


def scan_mma():
    """The MMA instructions of the decode index scan's two score forms (KEYS_M: keys x queries),
    bf16 and 8-bit keys."""
    import re

    for dtype in ("bf16", "fp8e4nv"):
        for keys_m in (0, 1):
            ptx = compile_scan(dtype, keys_m).asm["ptx"]
            print(json.dumps({"kernel": "index_partial_mma", "dtype": dtype, "keys_m": keys_m,
                              "wgmma": sorted(set(re.findall(r"wgmma\.mma_async[\w.]*", ptx))),
                              "mma_sync": len(re.findall(r"mma\.sync", ptx))}), flush=True)


def q_outer_async():
    """The query-outer form with whole blocks behind a branch per slot (SUB 0) and as one loop of
    64-key sub-blocks (main_branch._Q_OUTER_SUB), compiled as the JIT does (16-byte aligned
    pointers and strides, its stages): the cp.async copies of its K and V."""
    fn, sig, base = KERNELS[-1]
    attrs = aligned(sig, [n for n in sig if n.isupper() or n.startswith("stride")])
    for sub in (0, 64):
        k = triton.compile(source(fn, sig, dict(base, USE_PDL=1, SUB=sub), attrs), target=GPUTarget("cuda", 90, 32),
                           options={"num_warps": 4, "num_stages": mb._Q_OUTER_STAGES})
        print(json.dumps({"kernel": "q_outer_cp_async", "mode": sub, "cp_async": k.asm["ptx"].count("cp.async.")}),
              flush=True)


def slot_sub_async():
    """The split form's slot kernel (merging the index lists) with the block whole (SUB 0) and in
    sub-blocks of 64 keys (main_branch._SLOT_SUB), compiled as the JIT does (16-byte aligned
    pointers and strides, 3 stages): the cp.async copies of its K and V."""
    attrs = aligned(SLOT_SIG, [n for n in SLOT_SIG if n.isupper() or n.startswith("stride")])
    for sub in (0, 64):
        const = dict(SLOT_CONST, SELECT=1, USE_PDL=1, SUB=sub)
        k = triton.compile(source(mb._slot_partial_kernel, SLOT_SIG, const, attrs), target=GPUTarget("cuda", 90, 32),
                           options={"num_warps": 4, "num_stages": mb._SLOT_STAGES})
        print(json.dumps({"kernel": "slot_sub_cp_async", "mode": sub, "cp_async": k.asm["ptx"].count("cp.async.")}),
              flush=True)


# the dense rows' kernel (main_branch._dense_rows_kernel) at M3 shapes
DENSE_SIG = {"Q": "*bf16", "K": "*bf16", "V": "*bf16", "PAGE_TABLE": "*i32", "SEQ_LENS": "*i32", "CU_SEQLENS": "*i32",
             "OUT": "*bf16", "LSE": "*fp32", "num_pages": I32, "qk_scale": "fp32", "n_tiles": I32,
             "n_batch": I32,
             **_scalars(["stride_qt", "stride_qh", "stride_kp", "stride_kb", "stride_kh", "stride_vp", "stride_vb",
                         "stride_vh", "stride_pt_b", "stride_ot", "stride_oh"])}


def dense_rows_async():
    """The dense rows' kernel with the launch of page tables wider than
    main_branch._DENSE_ONE_STAGE_KEYS (tiles of _DENSE_TILE_ROWS rows, _DENSE_SUB-key sub-blocks,
    _DENSE_STAGES stages, _DENSE_WARPS warps), with the tile map (BATCH_P 32 and 1024: calls of
    up to 1024 requests) and without it (BATCH_P 0: larger calls), compiled as the JIT does: the
    cp.async copies of K and V in its two key loops, and whether any key load is left
    synchronous (ld.global of 16 bytes: a loop Triton did not pipeline)."""
    names = [n for n in DENSE_SIG if n.isupper() or n.startswith("stride")]
    names.remove("stride_pt_b")  # a page-table row's width: any
    for batch_p in (0, 32, 1024):
        const = dict(G=16, G_P=16, MQ=mb._DENSE_TILE_ROWS // 16, D=128, D_P=128, BLOCK=128, TOPK=16,
                     SUB=mb._DENSE_SUB, IEEE=False, BATCH_P=batch_p)
        k = triton.compile(source(mb._dense_rows_kernel, DENSE_SIG, const, aligned(DENSE_SIG, names)),
                           target=GPUTarget("cuda", 90, 32),
                           options={"num_warps": mb._DENSE_WARPS, "num_stages": mb._DENSE_STAGES})
        ptx = k.asm["ptx"]
        print(json.dumps({"kernel": "dense_rows", "mode": batch_p,
                          "cp_async": ptx.count("cp.async.cg") + ptx.count("cp.async.ca"),
                          "ld_global_v4": ptx.count("ld.global.v4")}), flush=True)


def tile_kernels_scalar_one():
    """The block tiles' runs and bounds kernels compiled with E (entries) == 1 as the JIT passes it:
    a constexpr int (any int argument equal to 1 is one), for one row, one group and topk 1."""
    from msa_sgl.ops import metadata as md

    ptrs = ("SORTED_KEY", "RUNS", "ORDER", "TILE_INFO", "TILE_E", "PAGE_TABLE", "CU_SEQLENS", "SEQ_LENS")
    for fn in (md._tile_runs_kernel, md._tile_bounds_kernel):
        for e_one in (0, 1):
            const = dict(MQ=64, CHUNK=1024, **({"E": 1} if e_one else {}))
            sig = {p.name: ("*i64" if p.name == "ORDER" else "*i32" if p.name in ptrs else I32)
                   for p in fn.params if not p.is_constexpr and p.name not in const}
            triton.compile(source(fn, sig, const), target=GPUTarget("cuda", 90, 32))
            print(json.dumps({"kernel": fn.__name__, "mode": "E1" if e_one else "E", "compiled": True}), flush=True)


def _ws_schedule(k, op=r"MUFU\.EX2"):
    """ptxas's view of a compiled Gluon KV-outer kernel: its warnings (e.g. C7514, warpgroup MMAs
    serialized) from ptxas -v on the kernel's PTX (the ptxas Triton compiles with), and per
    warpgroup-MMA wait in the SASS of the kernel's cubin, in order, its depth (DEPBAR.LE n) and
    the instructions matching ``op`` (the exp2s, MUFU.EX2) before the next wait. None where the
    tools are missing."""
    import re
    import tempfile

    from triton import knobs

    ptxas = knobs.nvidia.ptxas.path
    cuobjdump = os.path.join(os.path.dirname(ptxas), "cuobjdump")
    if not (os.path.exists(ptxas) and os.path.exists(cuobjdump)):
        return None, None
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "k.ptx"), "w") as f:
            f.write(k.asm["ptx"])
        r = subprocess.run([ptxas, "-arch=sm_90a", "-v", os.path.join(d, "k.ptx"), "-o", os.path.join(d, "k2.cubin")],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-2000:]
        warnings = [line for line in (r.stdout + r.stderr).splitlines() if "warning" in line.lower()]
        with open(os.path.join(d, "k.cubin"), "wb") as f:
            f.write(k.asm["cubin"])
        r = subprocess.run([cuobjdump, "-sass", os.path.join(d, "k.cubin")], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-2000:]
    waits = []
    for m in re.finditer(r"WARPGROUP\.DEPBAR\.LE gsb0, 0x(\d+)|" + op, r.stdout):
        if m.group(1) is not None:
            waits.append([int(m.group(1)), 0])
        elif waits:
            waits[-1][1] += 1
    return warnings, waits


def _compile_ws(fn, gdt, diag, after_tile_info=None):
    """A Gluon KV-outer kernel ``fn`` compiled for sm_90 at M3 shapes in dtype ``gdt`` as
    launch_kv_outer_ws launches it (``after_tile_info``: parameters an instrumented copy takes
    after TILE_INFO, {name: type})."""
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon._runtime import GluonASTSource

    from msa_sgl.ops import kv_outer_ws as ws

    dt = "bf16" if gdt == gl.bfloat16 else "fp16"
    lay = gl.NVMMASharedLayout.get_default_for([128, 128], gdt)
    sig = {"q_desc": f"tensordesc<{dt}[16, 128],{lay!r}>", "k_desc": f"tensordesc<{dt}[128, 128],{lay!r}>",
           "v_desc": f"tensordesc<{dt}[128, 128],{lay!r}>", "o_desc": f"tensordesc<{dt}[16, 128],{lay!r}>",
           "TILE_E": "*i32", "TILE_INFO": "*i32", **(after_tile_info or {}), "LSE_PART": "*fp32", "grid": I32,
           "row_lo": I32, "qk_scale": "fp32"}
    const = dict(HQ=64, G=16, NG=4, TOPK=16, MQ=8, D=128, BLOCK=128, STAGES=ws._STAGES,
                 CONSUMER_REGS=ws._CONSUMER_REGS, PRODUCER_REGS=ws._PRODUCER_REGS, DIAG=diag)
    return triton.compile(GluonASTSource(fn, dict(sig, **{c: "constexpr" for c in const}), const),
                          target=GPUTarget("cuda", 90, 32), options={"num_warps": 4, "maxnreg": ws._MAXNREG})


def kv_outer_ws():
    """The warp-specialized Gluon KV-outer partial kernel (ops.kv_outer_ws) at M3 shapes, bf16 and
    fp16, as launch_kv_outer_ws launches it: its TMA copy instructions, warpgroup MMAs, the
    partitions' register budgets (setmaxnreg), shared memory, and ptxas's schedule
    (_ws_schedule). Nothing where this Triton's Gluon is not the one the kernel is written for
    (kv_outer_ws.HAVE_GLUON)."""
    import re

    from msa_sgl.ops import kv_outer_ws as ws

    if not ws.HAVE_GLUON:
        return
    from triton.experimental.gluon import language as gl

    for diag in (True, False):  # the causal mask on diagonal tiles only (the default) or on all
        for dt, gdt in (("bf16", gl.bfloat16), ("fp16", gl.float16)):
            k = _compile_ws(ws._kv_outer_ws_kernel, gdt, diag)
            ptx = k.asm["ptx"]
            warnings, waits = _ws_schedule(k) if dt == "bf16" else (None, None)
            print(json.dumps({"kernel": "kv_outer_ws" if diag else "kv_outer_ws_fullmask", "mode": dt,
                              "shared": k.metadata.shared,
                              # (Triton 3.6 names the loads' destination shared::cluster, 3.8 shared::cta)
                              "tma_load": len(re.findall(r"cp\.async\.bulk\.tensor\.2d\.shared::\w+\.global", ptx)),
                              "tma_store": ptx.count("cp.async.bulk.tensor.2d.global.shared"),
                              "wgmma": len(re.findall(r"wgmma\.mma_async", ptx)),
                              "setmaxnreg": sorted(set(int(v) for v in re.findall(
                                  r"setmaxnreg\.\w+\.sync\.aligned\.u32\s+(\d+)", ptx))),
                              "ptxas_warnings": warnings, "waits": waits}), flush=True)


def index_ws():
    """The warp-specialized Gluon prefill index scan (ops.index_ws) at M3 shapes, bf16 and fp16, on
    128- and 256-row tiles, as launch_index_ws launches it: TMA loads, warpgroup MMAs, partition
    registers, shared memory, and ptxas's schedule (per MMA wait, the FMNMX after it: the first
    product's row maxima between the two waits). Nothing where this Triton's Gluon is not the one
    the kernel is written for."""
    import re

    from msa_sgl.ops import index_ws as iw

    if not iw.HAVE_GLUON:
        return
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon._runtime import GluonASTSource

    for rows in (128, 256):
        for dt, gdt in (("bf16", gl.bfloat16), ("fp16", gl.float16)):
            lay = gl.NVMMASharedLayout.get_default_for([128, 128], gdt)
            sig = {"Q": f"*{dt}", "k_desc": f"tensordesc<{dt}[128, 128],{lay!r}>", "PAGE_TABLE": "*i32",
                   "SEQ_LENS": "*i32", "CU_SEQLENS": "*i32", "TILE_CUM": "*i32", "OUT_KEY": "*i64", "batch": I32,
                   "num_pages": I32, "stride_qt": I32, "stride_qh": I32, "stride_pt_b": I32, "n_split": I32}
            const = dict(HKV=4, HKV_P=4, BLOCK_T=rows // 4, D=128, BLOCK=128, N_INIT=0, N_LOCAL=1, K_FREE=15, KF=16,
                         SEARCH_STEPS=1, SPLIT_FLOOR=8, SPLIT_PIECES=64, LAST_FIRST=1, STAGES=iw._STAGES,
                         CONSUMER_REGS=iw._CONSUMER_REGS, PRODUCER_REGS=iw._PRODUCER_REGS)
            k = triton.compile(GluonASTSource(iw._index_ws_kernel, dict(sig, **{c: "constexpr" for c in const}), const),
                               target=GPUTarget("cuda", 90, 32), options={"num_warps": 4, "maxnreg": iw._MAXNREG})
            ptx = k.asm["ptx"]
            warnings, waits = _ws_schedule(k, r"FMNMX") if dt == "bf16" else (None, None)
            print(json.dumps({"kernel": "index_ws", "mode": dt, "num_stages": rows, "shared": k.metadata.shared,
                              "tma_load": len(re.findall(r"cp\.async\.bulk\.tensor\.2d\.shared::\w+\.global", ptx)),
                              "wgmma": len(re.findall(r"wgmma\.mma_async", ptx)),
                              "setmaxnreg": sorted(set(int(v) for v in re.findall(
                                  r"setmaxnreg\.\w+\.sync\.aligned\.u32\s+(\d+)", ptx))),
                              "ptxas_warnings": warnings, "waits": waits}), flush=True)


def ws_timeline():
    """benchmarks/ws_timeline.py's instrumented copy of the Gluon kernel (its anchors still match
    the kernel's source; the stamps compile): the %clock64 reads in its PTX."""
    from msa_sgl.ops import kv_outer_ws as ws

    if not ws.HAVE_GLUON:
        return
    from triton.experimental.gluon import language as gl

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                    "benchmarks"))
    import ws_timeline as wt

    try:  # (a broken anchor or stamp fails this check alone, not every compile check of this process)
        mod = wt.build()
        k = _compile_ws(mod._kv_outer_ws_kernel_tl, gl.bfloat16, ws._DIAG, {"STAMP": "*i64"})
    except Exception as exc:  # noqa: BLE001
        print(json.dumps({"kernel": "ws_timeline", "mode": "bf16", "error": repr(exc)[:500]}), flush=True)
        return
    marks = {role: len(m) for role, m in (p for p in wt.PLAN["gluon"][1].values())}
    print(json.dumps({"kernel": "ws_timeline", "mode": "bf16", "clock64": k.asm["ptx"].count("%clock64"),
                      "expected": 2 * marks["WG"] + marks["2"]}), flush=True)


def main():
    kv_outer_ws()
    index_ws()
    ws_timeline()
    tile_kernels_scalar_one()
    key_buffers()
    scan_mma()
    slot_sub_async()
    q_outer_async()
    dense_rows_async()
    for fn, sig, const in KERNELS:
        for mode in (0, 1, 2):
            k = triton.compile(source(fn, sig, dict(const, USE_PDL=mode)), target=GPUTarget("cuda", 90, 32),
                               options={"launch_pdl": mode > 0})
            ptx = k.asm["ptx"]
            name = fn.__name__ + ("_select" if const.get("SELECT") else "") + ("_heads" if const.get("NS_H") else "")
            print(json.dumps({"kernel": name, "mode": mode, "wait": ptx.count("griddepcontrol.wait"),
                              "launch": ptx.count("griddepcontrol.launch_dependents")}), flush=True)


if __name__ == "__main__":
    main()
