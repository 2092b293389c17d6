"""One device call for decode (issue 4): MSADecodeWrapper steps timed as CUDA-graph replays beside
dense SDPA decode and SGLang 0.5.23's built-in decode path, on the same inputs.

    python benchmarks/decode_run.py [--quick] [--forms] [--peer]

MiniMax-M3 shapes (Hq 64, Hkv 4, D 128, d_idx 128, block 128, topk 16), bf16. Per point: ms per
decode step (indexer + top-k + attention, one layer), the compulsory bytes (every index key of
every request, K and V of the 16 selected blocks per (token, group), q and out) and the GB/s they
imply, the index scan alone (ms and GB/s of index keys), dense decode (flash and cuDNN SDPA over
the same-length K/V) and, with --peer, SGLang's path. The card's device-to-device copy rate is
measured first: the bandwidth roofline. Writes $OUT/decode_run.json and prints a table last.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import msa_sgl  # noqa: E402
from harness import bench as hb  # noqa: E402
from msa_sgl import ops  # noqa: E402

import gpu_run  # noqa: E402  (env_info, free, dense_decode_ms)

R = {"env": {}, "copy_gbps": None, "decode": [], "forms": [], "fp8": [], "fp8_quality": [], "fp8_prefill": [],
     "errors": []}
T0 = time.time()


def log(*a):
    print(f"[{time.time() - T0:6.1f}s]", *a, flush=True)


def copy_bandwidth() -> float:
    """Device-to-device copy of 1 GiB: GB/s counting read + write."""
    n = 1 << 29
    a = torch.empty(n, dtype=torch.bfloat16, device="cuda")
    b = torch.empty_like(a)
    ms = hb.bench_ms(lambda: b.copy_(a), warmup=5, rep=50)
    return 2 * a.numel() * 2 / ms / 1e6


def compulsory_bytes(batch, ctx, q_len):
    idx, kv, io = hb.decode_bytes(batch, ctx, q_len)
    return idx, idx + kv + io


def _run(w, a):
    return w.run(a["q"], a["k_cache"], a["v_cache"], a["q_idx"], a["k_idx_cache"])


def _index_only(w, a, pdl=0):
    sp = w.step_plan
    batch, total_q, plan, grid = sp.batch, sp.total_q, sp.index, sp.grid_tiles
    n = total_q * w.hkv * plan.n_split * plan.kf
    ops.launch_index(a["q_idx"], a["k_idx_cache"], w._page_table[:batch], w._cu_seqlens[: batch + 1],
                     w._seq_lens[:batch], w.config, plan, w._tile_cum[: batch + 1], grid, w._token_req[:total_q],
                     w._part_keys[:n].view(-1, plan.n_split, plan.kf), w._topk[:total_q], pdl=pdl)


def time_decode(batch, ctx, q_len=1, peer=None):
    idx_bytes, need = compulsory_bytes(batch, ctx, q_len)
    copies = max(1, min(8, math.ceil(200e6 / need)))  # rotate inputs so L2 does not flatter
    probs = [hb.make_big_problem([q_len] * batch, [ctx] * batch, dtype=torch.bfloat16, seed=batch + ctx + i)
             for i in range(copies)]
    ws = [hb.planned_decode_wrapper(p, q_len) for p in probs]
    for w, p in zip(ws, probs):
        _run(w, p.args)
    torch.cuda.synchronize()
    ms = hb.bench_graph_ms(lambda: [_run(w, p.args) for w, p in zip(ws, probs)]) / copies
    # the same step without programmatic dependent launch (the wrapper's default uses it on sm_90+)
    ws_np = [hb.planned_decode_wrapper(p, q_len, pdl=False) for p in probs]
    outs = [_run(w, p.args).clone() for w, p in zip(ws, probs)]
    outs_np = [_run(w, p.args).clone() for w, p in zip(ws_np, probs)]
    pdl_bitwise = all(torch.equal(a, b) for a, b in zip(outs, outs_np))
    ms_np = hb.bench_graph_ms(lambda: [_run(w, p.args) for w, p in zip(ws_np, probs)]) / copies
    ms_idx = hb.bench_graph_ms(lambda: [_index_only(w, p.args) for w, p in zip(ws, probs)]) / copies
    a0 = probs[0].args
    ms_plan = hb.bench_ms(lambda: ws[0].plan(a0["page_table"], a0["cu_seqlens_q"], a0["seq_lens_k"],
                                             total_q=batch * q_len), rep=50)
    ws[0].plan(a0["page_table"], a0["cu_seqlens_q"], a0["seq_lens_k"], total_q=batch * q_len)
    ms_run_eager = hb.bench_ms(lambda: _run(ws[0], a0), rep=50)
    # the wrapper agrees with the plain API (selection exact, output bitwise: same kernels)
    same_sel = bool(torch.equal(ws[0].topk_idx, msa_sgl.index_topk(**probs[0].index_args())))
    rec = dict(batch=batch, ctx=ctx, q_len=q_len, msa_ms=ms, msa_ms_no_pdl=ms_np, pdl=ws[0].pdl,
               pdl_output_bitwise_equal=pdl_bitwise, index_ms=ms_idx, plan_ms_eager=ms_plan,
               run_ms_eager=ms_run_eager, bytes=need, gbps=need / ms / 1e6, index_gbps=idx_bytes / ms_idx / 1e6,
               copies=copies, wrapper_selection_equals_api=same_sel)
    # dense decode over the same-length contiguous K/V
    if q_len == 1:
        dense, best = gpu_run.dense_decode_ms(batch, ctx, q_len)
        rec["dense"] = dense
        rec["speedup_vs_dense"] = best / ms
    if peer is not None and q_len == 1:
        import peer_sglang as ps

        try:
            call = ps.SGLangCall(peer, probs[0])
            out_sg, topk_sg = call.decode()
            rec["sglang_same_selection_rows"] = (ps.as_msa_topk(topk_sg) == msa_sgl.index_topk(
                **probs[0].index_args())).all(-1).float().mean().item()
            out_on_sg = ops.sparse_attention(**probs[0].attention_args(ps.as_msa_topk(topk_sg)))
            rec["out_rel_l2_on_sglang_selection"] = float(
                (out_on_sg.float() - out_sg.view_as(out_on_sg).float()).norm() / out_sg.float().norm())
            calls = [ps.SGLangCall(peer, p) for p in probs]
            rec["sglang_ms"] = hb.bench_graph_ms(lambda: [c.decode() for c in calls]) / copies
            rec["speedup_vs_sglang"] = rec["sglang_ms"] / ms
        except Exception as e:  # noqa: BLE001
            R["errors"].append(f"peer decode {batch},{ctx}: {e!r}"[:400])
            log("PEER FAILED", traceback.format_exc()[-1200:])
    log("decode", rec)
    R["decode"].append(rec)


def time_decode_fp8(batch, ctx, q_len=1):
    """The same decode step with 8-bit index keys: ms, bytes, speedup over bf16 keys and dense."""
    idx_bytes, kv, _ = hb.decode_bytes(batch, ctx, q_len, fp8_keys=True)
    need = idx_bytes + kv
    copies = max(1, min(8, math.ceil(200e6 / need)))
    probs = [hb.make_big_problem([q_len] * batch, [ctx] * batch, dtype=torch.bfloat16, seed=batch + ctx + i)
             for i in range(copies)]
    qs = [hb.quantized_index_keys(p) for p in probs]
    ws = [hb.planned_decode_wrapper(p, q_len, index_fp8=True) for p in probs]

    def run8(w, p, q8):
        a = p.args
        return w.run(a["q"], a["k_cache"], a["v_cache"], a["q_idx"], q8[0], k_idx_scale=q8[1])

    for w, p, q8 in zip(ws, probs, qs):
        run8(w, p, q8)
    torch.cuda.synchronize()
    ms = hb.bench_graph_ms(lambda: [run8(w, p, q8) for w, p, q8 in zip(ws, probs, qs)]) / copies
    bf = next((d for d in R["decode"] if d["batch"] == batch and d["ctx"] == ctx and d["q_len"] == q_len), None)
    rec = dict(batch=batch, ctx=ctx, q_len=q_len, msa_fp8_ms=ms, bytes=need, gbps=need / ms / 1e6)
    if bf:
        rec["bf16_keys_ms"] = bf["msa_ms"]
        if "dense" in bf:
            rec["speedup_vs_dense"] = min(v for k, v in bf["dense"].items() if not k.endswith("_error")) / ms
        if "sglang_ms" in bf:
            rec["speedup_vs_sglang"] = bf["sglang_ms"] / ms
    log("fp8 decode", rec)
    R["fp8"].append(rec)


def _quality_problem(kind):
    """4 requests x 64 queries at 128K; "structured": index keys = a per-block direction + noise."""
    prob = hb.make_big_problem([64] * 4, [131072] * 4, dtype=torch.bfloat16, seed=7)
    if kind == "structured":
        k = prob.args["k_idx_cache"]
        base = torch.randn(k.shape[0], 1, k.shape[2], device=k.device, dtype=torch.float32)
        k.copy_((base + 0.5 * torch.randn_like(k, dtype=torch.float32)).to(k.dtype))
    return prob


def fp8_query_variant():
    """8-bit keys with the index queries kept in bf16 (keys widened in-kernel): speed and
    selection agreement with bf16 keys, against the default (queries rounded to e4m3)."""
    from msa_sgl.ops import index_branch as ib

    for kind in ("random", "structured"):
        prob = _quality_problem(kind)
        k8, sc = hb.quantized_index_keys(prob)
        ia = prob.index_args()
        t16 = msa_sgl.index_topk(**ia)
        try:
            ib.FP8_QUERY = False
            tk = msa_sgl.index_topk(**{**ia, "k_idx_cache": k8, "k_idx_scale": sc})
        finally:
            ib.FP8_QUERY = True
        rec = dict(kind=kind, q_bf16_identical_sets=(t16 == tk).all(-1).float().mean().item())
        log("fp8 keys, bf16 queries", rec)
        R["fp8_quality"].append(rec)
    for batch, ctx in ((1, 1 << 20), (8, 1 << 20), (64, 131072)):
        prob = hb.make_big_problem([1] * batch, [ctx] * batch, dtype=torch.bfloat16, seed=3)
        k8, sc = hb.quantized_index_keys(prob)
        w = hb.planned_decode_wrapper(prob, 1, index_fp8=True)
        a = prob.args
        rec = dict(batch=batch, ctx=ctx)
        for q8 in (True, False):
            ib.FP8_QUERY = q8
            try:
                # an eager step first, synchronised: a fault shows here, in this step, rather than
                # in a later graph replay (an illegal address at 8 x 1M in two full runs: NOTES v15)
                log("fp8 query variant, eager step", dict(batch=batch, ctx=ctx, q8=q8))
                out = w.run(a["q"], a["k_cache"], a["v_cache"], a["q_idx"], k8, k_idx_scale=sc)
                torch.cuda.synchronize()
                rec["finite_q8" if q8 else "finite_q_bf16"] = bool(torch.isfinite(out).all())
                log("fp8 query variant, graph bench", dict(batch=batch, ctx=ctx, q8=q8))
                rec["q8" if q8 else "q_bf16"] = hb.bench_graph_ms(
                    lambda: w.run(a["q"], a["k_cache"], a["v_cache"], a["q_idx"], k8, k_idx_scale=sc))
                torch.cuda.synchronize()
            finally:
                ib.FP8_QUERY = True
        log("fp8 keys decode, q8 vs q bf16 (ms)", rec)
        R["fp8_quality"].append(rec)
    prob = hb.make_big_problem([16384], [131072], dtype=torch.bfloat16, seed=5)
    k8, sc = hb.quantized_index_keys(prob)
    ia = {**prob.index_args(), "k_idx_cache": k8}
    flops = hb.index_flops([16384], [131072], 4, 128)
    ib.FP8_QUERY = False
    try:
        t = hb.bench_ms(lambda: ops.index_topk(**ia, k_idx_scale=sc), rep=100)
    finally:
        ib.FP8_QUERY = True
    rec = dict(P=114688, C=16384, fp8_keys_q_bf16_ms=t, tflops=flops / t / 1e9)
    log("fp8 keys prefill, q bf16", rec)
    R["fp8_prefill"].append(rec)


def fp8_quality():
    """Fraction of (query, group) rows whose 8-bit selection equals the bf16 one, random and
    structured index data (keys = a per-block direction + noise, so blocks differ in relevance)."""
    for kind in ("random", "structured"):
        prob = _quality_problem(kind)
        k8, sc = hb.quantized_index_keys(prob)
        ia = prob.index_args()
        t16 = msa_sgl.index_topk(**ia)
        t8 = msa_sgl.index_topk(**{**ia, "k_idx_cache": k8, "k_idx_scale": sc})
        same = (t16 == t8).all(-1).float().mean().item()
        s16, s8 = (t16.sort(-1).values, t8.sort(-1).values)
        overlap = (((s16[..., :, None] == s8[..., None, :]) & (s16[..., :, None] >= 0)).sum().item()
                   / max(1, (s16 >= 0).sum().item()))
        rec = dict(kind=kind, rows=int(t16.shape[0] * t16.shape[1]), identical_sets=same, block_overlap=overlap)
        log("fp8 quality", rec)
        R["fp8_quality"].append(rec)


def fp8_prefill(P=114688, C=16384):
    prob = hb.make_big_problem([C], [P + C], dtype=torch.bfloat16, seed=P + 11)
    k8, sc = hb.quantized_index_keys(prob)
    ia = prob.index_args()
    flops = hb.index_flops([C], [P + C], 4, 128)
    t16 = hb.bench_ms(lambda: ops.index_topk(**ia), rep=100)
    t8 = hb.bench_ms(lambda: ops.index_topk(**{**ia, "k_idx_cache": k8}, k_idx_scale=sc), rep=100)
    same = (ops.index_topk(**ia) == ops.index_topk(**{**ia, "k_idx_cache": k8}, k_idx_scale=sc)).all(-1).float().mean()
    rec = dict(P=P, C=C, bf16_ms=t16, fp8_ms=t8, bf16_tflops=flops / t16 / 1e9, fp8_tflops=flops / t8 / 1e9,
               identical_sets=float(same))
    log("fp8 prefill index", rec)
    R["fp8_prefill"].append(rec)


def time_forms(ctx=16384):
    """Main branch alone, split vs query-outer, by the number of query rows (decode batches)."""
    for batch in (1, 16, 64, 256, 1024):
        prob = hb.make_big_problem([1] * batch, [ctx] * batch, dtype=torch.bfloat16, seed=batch)
        topk = msa_sgl.index_topk(**prob.index_args())
        aa = prob.attention_args(topk)
        rec = dict(batch=batch, ctx=ctx)
        for method in ("split", "q_outer"):
            rec[method + "_ms"] = hb.bench_graph_ms(lambda: ops.sparse_attention(**aa, method=method))
        log("forms", rec)
        R["forms"].append(rec)
        gpu_run.free()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--forms", action="store_true")
    ap.add_argument("--peer", action="store_true")
    ap.add_argument("--fp8", action="store_true")
    ap.add_argument("--fp8-only", action="store_true", help="only the 8-bit key studies (no decode table)")
    a = ap.parse_args()
    gpu_run.env_info()
    R["env"] = gpu_run.RESULTS["env"]
    peer = None
    if a.peer:
        import peer_sglang as ps

        peer, err = ps.load()
        if peer is None:
            R["errors"].append(f"sglang peer not importable: {err}")
    try:
        R["copy_gbps"] = copy_bandwidth()
        log("copy GB/s", R["copy_gbps"])
        points = ([(1, 131072), (8, 131072)] if a.quick else
                  [(1, 32768), (1, 131072), (1, 1 << 20), (8, 32768), (8, 131072), (8, 1 << 20), (64, 32768),
                   (64, 131072)])
        for batch, ctx in ([] if a.fp8_only else points):
            try:
                time_decode(batch, ctx, peer=peer)
            except Exception as e:  # noqa: BLE001
                R["errors"].append(f"decode {batch}x{ctx}: {e!r}"[:400])
                log("DECODE FAILED", traceback.format_exc()[-1500:])
            gpu_run.free()
        for batch, q_len in (() if a.fp8_only else ((1, 8), (8, 8))):
            try:
                time_decode(batch, 131072, q_len=q_len)
            except Exception as e:  # noqa: BLE001
                R["errors"].append(f"decode mtp {batch}x{q_len}: {e!r}"[:400])
            gpu_run.free()
        if a.fp8 or a.fp8_only:
            for batch, ctx in ([] if a.fp8_only else points):
                try:
                    time_decode_fp8(batch, ctx)
                except Exception as e:  # noqa: BLE001
                    R["errors"].append(f"fp8 decode {batch}x{ctx}: {e!r}"[:400])
                    log("FP8 FAILED", traceback.format_exc()[-1500:])
                gpu_run.free()
            for fn in (fp8_quality, fp8_prefill, fp8_query_variant):
                try:
                    fn()
                except Exception as e:  # noqa: BLE001
                    R["errors"].append(f"{fn.__name__}: {e!r}"[:400])
                    log("FP8 FAILED", traceback.format_exc()[-1500:])
                gpu_run.free()
        if a.forms:
            time_forms()
    finally:
        out = Path(os.environ.get("OUT", "."))
        (out / "decode_run.json").write_text(json.dumps(R, indent=1))
        print(f"\ncard {R['env'].get('card')} driver {R['env'].get('driver')} torch {R['env'].get('torch')} "
              f"triton {R['env'].get('triton')}; copy {R['copy_gbps'] or 0:.0f} GB/s")
        for d in R["decode"]:
            extra = ""
            if "dense" in d:
                extra += f" dense {min([v for k, v in d['dense'].items() if not k.endswith('_error')] or [0]):.4f} ms x{d['speedup_vs_dense']:.2f}"
            if "sglang_ms" in d:
                extra += (f" sglang {d['sglang_ms']:.4f} ms x{d['speedup_vs_sglang']:.2f} same sel "
                          f"{d['sglang_same_selection_rows']:.4f} rel {d['out_rel_l2_on_sglang_selection']:.1e}")
            print(f"b={d['batch']:>2} ctx={d['ctx']:>7} q={d['q_len']} msa {d['msa_ms']:.4f} ms ({d['gbps']:.0f} GB/s) "
                  f"[no PDL {d['msa_ms_no_pdl']:.4f}, bitwise {d['pdl_output_bitwise_equal']}] "
                  f"index {d['index_ms']:.4f} ms ({d['index_gbps']:.0f} GB/s) plan {d['plan_ms_eager']:.3f} "
                  f"run-eager {d['run_ms_eager']:.3f}{extra}")
        for f in R["fp8"]:
            print(f"fp8 keys b={f['batch']:>2} ctx={f['ctx']:>7}: {f['msa_fp8_ms']:.4f} ms ({f['gbps']:.0f} GB/s) bf16 keys "
                  f"{f.get('bf16_keys_ms', 0):.4f} x dense {f.get('speedup_vs_dense', 0):.2f} x sglang {f.get('speedup_vs_sglang', 0):.2f}")
        for f in R["fp8_quality"] + R["fp8_prefill"]:
            print("fp8", f)
        for f in R["forms"]:
            print(f"forms b={f['batch']:>4}: split {f['split_ms']:.4f} q_outer {f['q_outer_ms']:.4f}")
        for e in R["errors"]:
            print("ERROR", e)


if __name__ == "__main__":
    main()
