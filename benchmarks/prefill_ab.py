"""A/B of the prefill main branch across two checkouts of msa_sgl, one device call.

    PYTHONPATH=OLD_TREE:$PWD python benchmarks/prefill_ab.py old
    PYTHONPATH=$PWD python benchmarks/prefill_ab.py new
    PYTHONPATH=$PWD python benchmarks/prefill_ab.py variants   # + workspace sizes (row ranges)
    PYTHONPATH=$PWD python benchmarks/prefill_ab.py window     # query windows of the KV-outer tiles (NOTES.md v15)
    PYTHONPATH=$PWD python benchmarks/prefill_ab.py kvsub      # KV-outer tiles of 128 / 256 rows (NOTES.md v18)
    PYTHONPATH=$PWD python benchmarks/prefill_ab.py kvrows64   # 64-row tiles on 4 warps, 3-4 an SM (NOTES.md v20c)
    PYTHONPATH=$PWD python benchmarks/prefill_ab.py ws         # the Gluon warp-specialized partial kernel (NOTES.md v25)
    PYTHONPATH=$PWD python benchmarks/prefill_ab.py pipe       # its pipelined consumers, mask on diagonal tiles or all (v26)
    AB_POINTS=0,114688 ... prefill_ab.py LABEL                   # other cached prefixes than the label's

(OLD_TREE: a directory holding another msa_sgl package, e.g. from ``git archive REV msa_sgl``.)
One 16K-token chunk after 0, 112K and 1008K cached tokens at MiniMax-M3 shapes (bf16): the
KV-outer main branch alone and the whole chunk (index + main), do_bench medians, plus checksums
of the output so the two runs can be compared for bitwise equality. Appends to
$OUT/prefill_ab.json.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

import msa_sgl
from harness import bench as hb
from msa_sgl import ops


def _variant(aa, prob, out, flops):
    """The KV-outer main branch as the knobs now stand against ``out``: bitwise, max and relative
    difference, finite; main branch, partial kernel and whole chunk ms. An exception: its repr."""
    try:
        o = ops.sparse_attention(**aa, method="kv_outer")
        r = dict(bitwise=bool(torch.equal(o, out)), max_diff=float((o.float() - out.float()).abs().max()),
                 rel_l2=float((o.double() - out.double()).norm() / out.double().norm()),
                 finite=bool(torch.isfinite(o).all()))
        r["ms"] = hb.bench_ms(lambda: ops.sparse_attention(**aa, method="kv_outer"), rep=60)
        r["partial_ms"] = hb.bench_ms(lambda: ops.sparse_attention(**aa, method="kv_outer", stop_after="partial"),
                                      rep=60)
        r["chunk_ms"] = hb.bench_ms(lambda: msa_sgl.msa_attention(**prob.msa_args()), rep=60)
        r["tflops"] = flops / r["ms"] / 1e9
        return r
    except Exception as exc:  # noqa: BLE001
        return repr(exc)[:300]


def main():
    label = sys.argv[1]
    out_path = Path(os.environ.get("OUT", ".")) / "prefill_ab.json"
    res = json.loads(out_path.read_text()) if out_path.exists() else []
    g = torch.Generator(device="cuda").manual_seed(0)
    points = {"window": (0, 16384, 114688, 1032192), "kvsub": (0, 16384, 32768, 114688, 1032192),
              "kvrows64": (0, 16384, 114688, 1032192), "ws": (0, 16384, 114688, 1032192),
              "pipe": (0, 16384, 114688, 1032192)}.get(label, (0, 114688, 1032192))
    if os.environ.get("AB_POINTS"):  # e.g. AB_POINTS=0,114688: the cached prefixes to run
        points = tuple(int(x) for x in os.environ["AB_POINTS"].split(","))
    for P in points:
        C = 16384
        prob = hb.make_big_problem([C], [P + C], dtype=torch.bfloat16, seed=P + 3)
        topk = ops.index_topk(**prob.index_args())
        aa = prob.attention_args(topk)
        out = ops.sparse_attention(**aa, method="kv_outer")
        w = torch.rand(out.shape, generator=g, device="cuda", dtype=torch.float64)
        main_ms = hb.bench_ms(lambda: ops.sparse_attention(**aa, method="kv_outer"), rep=100)
        partial_ms = hb.bench_ms(lambda: ops.sparse_attention(**aa, method="kv_outer", stop_after="partial"), rep=100)
        chunk_ms = hb.bench_ms(lambda: msa_sgl.msa_attention(**prob.msa_args()), rep=100)
        flops = hb.main_flops(hb.attended_keys(topk, prob.args["cu_seqlens_q"], prob.args["seq_lens_k"], 128), 16, 128)
        rec = dict(label=label, msa_sgl=msa_sgl.__file__, P=P, C=C, main_ms=main_ms, partial_ms=partial_ms,
                   chunk_ms=chunk_ms, main_tflops=flops / main_ms / 1e9,
                   checksum=[float(out.double().sum()), float((out.double() * w).sum())])
        if label == "variants":  # launch / pass-size variants of the KV-outer form (this checkout)
            rec["variants"] = {}
            # (measured before: 256 rows on 8 or 16 warps and 64 rows on 4 were 6-75% slower than 128
            # on 8; NOTES.md v10)
            for tr, nw, ws in ((128, 8, None), (128, 8, 2 << 30), (128, 8, 8 << 30)):
                kw = dict(method="kv_outer", tile_rows=tr, num_warps=nw, workspace_bytes=ws)
                try:
                    same = bool(torch.equal(ops.sparse_attention(**aa, **kw), out)) if tr == 128 else None
                    ms = hb.bench_ms(lambda: ops.sparse_attention(**aa, **kw), rep=50)
                    rec["variants"][f"rows{tr}_w{nw}_ws{ws}"] = dict(ms=ms, tflops=flops / ms / 1e9, bitwise=same)
                except Exception as e:  # noqa: BLE001
                    rec["variants"][f"rows{tr}_w{nw}_ws{ws}"] = repr(e)[:200]
        if label == "window":  # query windows (metadata.build_block_tiles), two rounds interleaved
            rec["window"] = {}
            for rnd in range(2):
                for qw in (0, 1024, 2048, 4096, None):
                    kw = dict(method="kv_outer", q_window=qw)
                    same = bool(torch.equal(ops.sparse_attention(**aa, **kw), out))
                    ms = hb.bench_ms(lambda: ops.sparse_attention(**aa, **kw), rep=50)
                    part = hb.bench_ms(lambda: ops.sparse_attention(**aa, **kw, stop_after="partial"), rep=50)
                    name = "wrule" if qw is None else f"w{qw}"
                    rec["window"].setdefault(name, []).append(dict(ms=ms, partial_ms=part, tflops=flops / ms / 1e9,
                                                                   bitwise=same))
        if label in ("kvsub", "kvrows64"):  # tile rows x sub-blocks (main_branch._KV_SUB) x stages, interleaved
            rec["kvsub"] = {}
            mbr = ops.main_branch
            configs = ((None, None, 3, 128), (None, 32, 3, 256), (None, 32, 2, 256), (None, 0, 3, 256))
            if label == "kvrows64":  # 64 rows on 4 warps: 3-4 programs an SM with sub-blocks (Triton 3.6, sm_90)
                configs = ((None, None, 3, 128), (None, 32, 2, 64), (None, 32, 3, 64), (None, 16, 2, 64),
                           (None, 32, 1, 64))
            for rnd in range(3):
                for ws, sub, st, rows in configs:
                    mbr._KV_SUB, mbr._KV_SUB_STAGES = sub, st
                    kw = dict(method="kv_outer", workspace_bytes=ws, tile_rows=rows, num_warps=max(4, rows // 16))
                    try:
                        o = ops.sparse_attention(**aa, **kw)
                        diff = float((o.float() - out.float()).abs().max())
                        ms = hb.bench_ms(lambda: ops.sparse_attention(**aa, **kw), rep=60)
                        part = hb.bench_ms(lambda: ops.sparse_attention(**aa, **kw, stop_after="partial"), rep=60)
                        r = dict(ms=ms, partial_ms=part, tflops=flops / ms / 1e9, max_diff=diff,
                                 finite=bool(torch.isfinite(o).all()))
                    except Exception as exc:  # noqa: BLE001
                        r = repr(exc)[:200]
                    finally:
                        mbr._KV_SUB, mbr._KV_SUB_STAGES = None, 3
                    rec["kvsub"].setdefault(f"rows{rows}_ws{ws}_sub{'rule' if sub is None else sub}_st{st}", []).append(r)
            print({k: [round(x["ms"], 3) if isinstance(x, dict) else x for x in v] for k, v in rec["kvsub"].items()},
                  flush=True)
        if label == "ws":  # main_branch._KV_WS off / on, two rounds interleaved
            rec["ws"] = {}
            mbr = ops.main_branch
            knob = mbr._KV_WS
            try:
                for rnd in range(2):
                    for name, on in (("off", False), ("on", True)):
                        mbr._KV_WS = on
                        rec["ws"].setdefault(name, []).append(_variant(aa, prob, out, flops))
            finally:
                mbr._KV_WS = knob
            print({k: [(round(x["ms"], 3), round(x["partial_ms"], 3), round(x["chunk_ms"], 3))
                       if isinstance(x, dict) else x for x in v] for k, v in rec["ws"].items()}, flush=True)
        if label == "pipe":  # Triton / Gluon (diagonal-only mask) / Gluon (mask on every tile), interleaved
            rec["pipe"] = {}
            mbr, wsm = ops.main_branch, ops.kv_outer_ws
            knobs = (mbr._KV_WS, wsm._DIAG)
            launched = []
            real = wsm.launch_kv_outer_ws

            def counted(*a, **k):
                launched.append(wsm._DIAG)
                return real(*a, **k)

            wsm.launch_kv_outer_ws = counted
            try:
                for rnd in range(2):
                    for name, knob in (("triton", (False, True)), ("gluon", (True, True)),
                                       ("gluon_fullmask", (True, False))):
                        mbr._KV_WS, wsm._DIAG = knob
                        launched.clear()
                        r = _variant(aa, prob, out, flops)
                        if isinstance(r, dict):
                            r["gluon_launches"] = len(launched)
                        rec["pipe"].setdefault(name, []).append(r)
            finally:
                mbr._KV_WS, wsm._DIAG = knobs
                wsm.launch_kv_outer_ws = real
            print({k: [(round(x["ms"], 3), round(x["partial_ms"], 3), round(x["chunk_ms"], 3), x["bitwise"])
                       if isinstance(x, dict) else x for x in v] for k, v in rec["pipe"].items()}, flush=True)
        print(rec, flush=True)
        res.append(rec)
        torch.cuda.empty_cache()
    out_path.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
