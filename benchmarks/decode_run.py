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

import gpu_run  # noqa: E402  (env_info, free, _sdpa)

R = {"env": {}, "copy_gbps": None, "decode": [], "forms": [], "errors": []}
T0 = time.time()
M3 = dict(num_q_heads=64, num_kv_heads=4, head_dim=128, index_dim=128)


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
    idx = batch * ctx * 128 * 2
    kv = batch * q_len * 4 * 16 * 128 * 128 * 2 * 2
    qo = batch * q_len * (64 * 128 * 2 * 2 + 4 * 128 * 2)
    return idx, idx + kv + qo


def _wrapper(prob, q_len):
    batch = len(prob.q_lens)
    w = msa_sgl.MSADecodeWrapper(prob.config, **M3, max_batch=batch, max_pages=prob.args["page_table"].shape[1],
                                 max_q_len=q_len, dtype=torch.bfloat16, device="cuda")
    a = prob.args
    w.plan(a["page_table"], a["cu_seqlens_q"], a["seq_lens_k"], total_q=sum(prob.q_lens))
    return w


def _run(w, a):
    return w.run(a["q"], a["k_cache"], a["v_cache"], a["q_idx"], a["k_idx_cache"])


def _index_only(w, a):
    batch, total_q, plan, grid, _ = w._planned
    n = total_q * w.hkv * plan.n_split * plan.kf
    ops.launch_index(a["q_idx"], a["k_idx_cache"], w._page_table[:batch], w._cu_seqlens[: batch + 1],
                     w._seq_lens[:batch], w.config, plan, w._tile_cum[: batch + 1], grid, w._token_req[:total_q],
                     w._part_keys[:n].view(-1, plan.n_split, plan.kf), w._topk[:total_q])


def time_decode(batch, ctx, q_len=1, peer=None):
    idx_bytes, need = compulsory_bytes(batch, ctx, q_len)
    copies = max(1, min(8, math.ceil(200e6 / need)))  # rotate inputs so L2 does not flatter
    probs = [hb.make_big_problem([q_len] * batch, [ctx] * batch, dtype=torch.bfloat16, seed=batch + ctx + i)
             for i in range(copies)]
    ws = [_wrapper(p, q_len) for p in probs]
    for w, p in zip(ws, probs):
        _run(w, p.args)
    torch.cuda.synchronize()
    ms = hb.bench_graph_ms(lambda: [_run(w, p.args) for w, p in zip(ws, probs)]) / copies
    ms_idx = hb.bench_graph_ms(lambda: [_index_only(w, p.args) for w, p in zip(ws, probs)]) / copies
    a0 = probs[0].args
    ms_plan = hb.bench_ms(lambda: ws[0].plan(a0["page_table"], a0["cu_seqlens_q"], a0["seq_lens_k"],
                                             total_q=batch * q_len), rep=50)
    ws[0].plan(a0["page_table"], a0["cu_seqlens_q"], a0["seq_lens_k"], total_q=batch * q_len)
    ms_run_eager = hb.bench_ms(lambda: _run(ws[0], a0), rep=50)
    # the wrapper agrees with the plain API (selection exact, output bitwise: same kernels)
    same_sel = bool(torch.equal(ws[0].topk_idx, msa_sgl.index_topk(**probs[0].index_args())))
    rec = dict(batch=batch, ctx=ctx, q_len=q_len, msa_ms=ms, index_ms=ms_idx, plan_ms_eager=ms_plan,
               run_ms_eager=ms_run_eager, bytes=need, gbps=need / ms / 1e6, index_gbps=idx_bytes / ms_idx / 1e6,
               copies=copies, wrapper_selection_equals_api=same_sel)
    # dense decode over the same-length contiguous K/V
    if q_len == 1:
        from torch.nn.attention import SDPBackend

        q4 = torch.randn(batch, 64, q_len, 128, device="cuda", dtype=torch.bfloat16)
        k4 = torch.randn(batch, 4, ctx, 128, device="cuda", dtype=torch.bfloat16)
        v4 = torch.randn_like(k4)
        dense = {}
        for name, be in (("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION)):
            try:
                gpu_run._sdpa(q4, k4, v4, be, False)
                torch.cuda.synchronize()
                dense[name] = hb.bench_graph_ms(lambda: gpu_run._sdpa(q4, k4, v4, be, False))
            except Exception as e:  # noqa: BLE001
                dense[name + "_error"] = repr(e)[:120]
        del q4, k4, v4
        ok = [v for k, v in dense.items() if not k.endswith("_error")]
        rec["dense"] = dense
        rec["speedup_vs_dense"] = min(ok) / ms if ok else float("nan")
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
        for batch, ctx in points:
            try:
                time_decode(batch, ctx, peer=peer)
            except Exception as e:  # noqa: BLE001
                R["errors"].append(f"decode {batch}x{ctx}: {e!r}"[:400])
                log("DECODE FAILED", traceback.format_exc()[-1500:])
            gpu_run.free()
        for batch, q_len in ((1, 8), (8, 8)):
            try:
                time_decode(batch, 131072, q_len=q_len)
            except Exception as e:  # noqa: BLE001
                R["errors"].append(f"decode mtp {batch}x{q_len}: {e!r}"[:400])
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
                  f"index {d['index_ms']:.4f} ms ({d['index_gbps']:.0f} GB/s) plan {d['plan_ms_eager']:.3f} "
                  f"run-eager {d['run_ms_eager']:.3f}{extra}")
        for f in R["forms"]:
            print(f"forms b={f['batch']:>4}: split {f['split_ms']:.4f} q_outer {f['q_outer_ms']:.4f}")
        for e in R["errors"]:
            print("ERROR", e)


if __name__ == "__main__":
    main()
