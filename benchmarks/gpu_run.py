"""One device call: check the kernels at scale against the float64 reference, then time them
beside the peers (dense SDPA, and SGLang 0.5.23's built-in MiniMax kernels when importable).

    python benchmarks/gpu_run.py [--check] [--bench] [--variants] [--peer [--peer-prefill P,P,...]] [--quick]

Writes $OUT/gpu_run.json (every number) and prints a short table last. MiniMax-M3 shapes:
Hq 64, Hkv 4, D 128, d_idx 128, block 128, topk 16, n_init 0, n_local 1.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import triton  # noqa: E402

import msa_sgl  # noqa: E402
from harness import bench as hb  # noqa: E402
from harness.tolerance import check_selection_contract, compare_topk, lse_error, output_error  # noqa: E402
from msa_sgl import ops, reference  # noqa: E402
from msa_sgl.reference import query_positions  # noqa: E402

RESULTS = {"env": {}, "checks": [], "prefill": [], "decode": [], "variants": [], "dense": [], "peer": [], "errors": []}
T0 = time.time()


def log(*a):
    print(f"[{time.time() - T0:6.1f}s]", *a, flush=True)


def env_info():
    p = torch.cuda.get_device_properties(0)
    try:
        drv = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception:  # noqa: BLE001
        drv = "?"
    RESULTS["env"] = dict(card=p.name, sms=p.multi_processor_count, mem_gb=round(p.total_memory / 2**30, 1),
                          driver=drv, torch=torch.__version__, triton=triton.__version__,
                          python=platform.python_version(), msa_sgl=msa_sgl.__version__)
    log("env", RESULTS["env"])


def free():
    import gc

    gc.collect()
    torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------
# correctness at scale
# ---------------------------------------------------------------------------------------------
def sampled_check(name, prob, n_rows=24, seed=0):
    """Kernel results of the whole call vs the float64 reference on sampled query rows, for
    both main-branch forms (and their agreement on every row)."""
    a = prob.args
    topk = msa_sgl.index_topk(**prob.index_args())
    out, lse = ops.sparse_attention(**prob.attention_args(topk), return_lse=True, method="kv_outer")
    out_q, lse_q = ops.sparse_attention(**prob.attention_args(topk), return_lse=True, method="q_outer")
    torch.cuda.synchronize()
    assert torch.isfinite(out).all() and torch.isfinite(out_q).all(), "non-finite output"
    forms = output_error(out, out_q.double(), out.dtype, what="kv_outer vs q_outer")
    total_q = out.shape[0]
    check_selection_contract(topk.cpu(), a["cu_seqlens_q"].cpu(), a["seq_lens_k"].cpu(), prob.config)
    # determinism: bitwise equal over 3 runs
    for _ in range(2):
        t2 = msa_sgl.index_topk(**prob.index_args())
        o2, l2 = ops.sparse_attention(**prob.attention_args(t2), return_lse=True, method="kv_outer")
        o3, l3 = ops.sparse_attention(**prob.attention_args(t2), return_lse=True, method="q_outer")
        assert torch.equal(t2, topk) and torch.equal(o2, out) and torch.equal(l2, lse), "not deterministic"
        assert torch.equal(o3, out_q) and torch.equal(l3, lse_q), "q_outer not deterministic"
    g = torch.Generator().manual_seed(seed)
    rows = torch.unique(torch.cat([torch.randint(0, total_q, (n_rows - 2,), generator=g), torch.tensor([0, total_q - 1])]))
    req, pos = query_positions(a["cu_seqlens_q"].cpu(), a["seq_lens_k"].cpu())
    # one single-query request per sampled row, over the same pages
    sub = dict(
        q=a["q"][rows.to(a["q"].device)].cpu(), q_idx=a["q_idx"][rows.to(a["q"].device)].cpu(),
        k_cache=a["k_cache"].cpu(), v_cache=a["v_cache"].cpu(), k_idx_cache=a["k_idx_cache"].cpu(),
        page_table=a["page_table"].cpu()[req[rows]].contiguous(),
        cu_seqlens_q=torch.arange(len(rows) + 1, dtype=torch.int32),
        seq_lens_k=(pos[rows] + 1).to(torch.int32),
    )
    iargs = {k: sub[k] for k in ("q_idx", "k_idx_cache", "page_table", "cu_seqlens_q", "seq_lens_k")}
    ref_topk = reference.index_topk(**iargs, config=prob.config)
    rep = compare_topk(topk.cpu()[rows], ref_topk, reference.index_scores(**iargs, config=prob.config),
                       sub["q_idx"], sub["k_idx_cache"], prob.config)
    attn = {k: sub[k] for k in ("q", "k_cache", "v_cache", "page_table", "cu_seqlens_q", "seq_lens_k")}
    ref_out, ref_lse = reference.sparse_attention(**attn, topk_idx=topk.cpu()[rows], config=prob.config, return_lse=True)
    err = output_error(out.cpu()[rows], ref_out, out.dtype)
    lerr = lse_error(lse.cpu()[rows], ref_lse, out.dtype)
    err_q = output_error(out_q.cpu()[rows], ref_out, out.dtype)
    lse_error(lse_q.cpu()[rows], ref_lse, out.dtype)
    rec = dict(name=name, dtype=str(out.dtype), rows=len(rows), total_q=total_q, rel_l2=err.rel_l2,
               max_abs=err.max_abs, lse_abs=lerr, q_outer_rel_l2=err_q.rel_l2, forms_rel_l2=forms.rel_l2,
               tie_rows=rep.differing_rows, deterministic=True)
    RESULTS["checks"].append(rec)
    log("check", rec)


def run_checks(quick):
    cases = [
        ("prompt_8k", [8192], [8192]),
        ("chunk_4k_after_28k", [4096], [32768]),
        ("mtp4_decode_batch8_mixed", [4] * 8, [1000, 5000, 9000, 17000, 33000, 40000, 129, 2048]),
        ("varlen_mixed", [300, 1, 0, 2000, 16], [300, 70000, 5, 4000, 131072]),
    ]
    if quick:
        cases = cases[:2]
    for dtype in (torch.bfloat16, torch.float16):
        for name, ql, sl in cases:
            try:
                prob = hb.make_big_problem(ql, sl, dtype=dtype, seed=len(name))
                sampled_check(f"{name}_{str(dtype)[6:]}", prob)
            except Exception as e:  # noqa: BLE001
                RESULTS["errors"].append(f"check {name} {dtype}: {e!r}")
                log("CHECK FAILED", name, dtype, traceback.format_exc())
            free()
    if not quick:  # a 1M-token request, sampled rows
        try:
            prob = hb.make_big_problem([2], [1 << 20], dtype=torch.bfloat16, seed=7)
            sampled_check("decode_mtp2_1M_bf16", prob, n_rows=2)
        except Exception as e:  # noqa: BLE001
            RESULTS["errors"].append(f"check 1M: {e!r}")
            log("CHECK FAILED 1M", traceback.format_exc())
        free()


# ---------------------------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------------------------
def dense_chunk_ms(prob):
    """Dense causal attention of the chunk's queries over all keys, bottom-right aligned."""
    (C,), (L,) = prob.q_lens, prob.seq_lens
    a = prob.args
    q4 = a["q"].transpose(0, 1)[None]  # [1, Hq, C, D]
    k4 = torch.randn(1, a["k_cache"].shape[2], L, a["q"].shape[2], device="cuda", dtype=a["q"].dtype)
    v4 = torch.randn_like(k4)
    from torch.nn.attention import SDPBackend

    tries = []
    if C == L:
        tries.append(("cudnn", lambda: _sdpa(q4, k4, v4, SDPBackend.CUDNN_ATTENTION, causal=True)))
        tries.append(("flash", lambda: _sdpa(q4, k4, v4, SDPBackend.FLASH_ATTENTION, causal=True)))
    else:
        rep = q4.shape[1] // k4.shape[1]
        kx, vx = k4.repeat_interleave(rep, 1), v4.repeat_interleave(rep, 1)
        tries.append(("aten_flash_bottom_right",
                      lambda: torch.ops.aten._scaled_dot_product_flash_attention(q4, kx, vx, 0.0, True, False)[0]))
    for name, fn in tries:
        try:
            fn()
            torch.cuda.synchronize()
            return name, hb.bench_ms(fn, rep=100)
        except Exception as e:  # noqa: BLE001
            log("dense", name, "failed", repr(e)[:200])
    return None, float("nan")


def _sdpa(q4, k4, v4, backend, causal):
    from torch.nn.attention import sdpa_kernel

    with sdpa_kernel([backend]):
        return F.scaled_dot_product_attention(q4, k4, v4, is_causal=causal, enable_gqa=True)


def time_prefill(P, C, dense=True, idx_opts=None, attn_opts=None, tag=""):
    prob = hb.make_big_problem([C], [P + C], dtype=torch.bfloat16, seed=P + C)
    idx_opts, attn_opts = idx_opts or {}, attn_opts or {}
    ia = prob.index_args()
    topk = ops.index_topk(**ia, **idx_opts)
    t_idx = hb.bench_ms(lambda: ops.index_topk(**ia, **idx_opts), rep=100)
    aa = prob.attention_args(topk)
    t_attn = hb.bench_ms(lambda: ops.sparse_attention(**aa, **attn_opts), rep=100)
    att = hb.attended_keys(topk, prob.args["cu_seqlens_q"], prob.args["seq_lens_k"], 128)
    f_idx = hb.index_flops([C], [P + C], 4, 128)
    f_main = hb.main_flops(att, 16, 128)
    rec = dict(P=P, C=C, tag=tag, index_ms=t_idx, attn_ms=t_attn, total_ms=t_idx + t_attn,
               index_tflops=f_idx / t_idx / 1e9, attn_tflops=f_main / t_attn / 1e9, idx_opts=idx_opts,
               attn_opts=attn_opts)
    if dense:
        rec["dense_backend"], rec["dense_ms"] = dense_chunk_ms(prob)
        rec["speedup_vs_dense"] = rec["dense_ms"] / rec["total_ms"]
    log("prefill", {k: (round(v, 3) if isinstance(v, float) else v) for k, v in rec.items()})
    return rec


def dense_whole_prompt(N):
    q4 = torch.randn(1, 64, N, 128, device="cuda", dtype=torch.bfloat16)
    k4 = torch.randn(1, 4, N, 128, device="cuda", dtype=torch.bfloat16)
    v4 = torch.randn_like(k4)
    from torch.nn.attention import SDPBackend

    out = {"N": N}
    for name, be in (("cudnn", SDPBackend.CUDNN_ATTENTION), ("flash", SDPBackend.FLASH_ATTENTION)):
        try:
            _sdpa(q4, k4, v4, be, True)
            torch.cuda.synchronize()
            ms = hb.bench_ms(lambda: _sdpa(q4, k4, v4, be, True), warmup=10, rep=50)
            out[name + "_ms"] = ms
            out[name + "_tflops"] = 2 * 64 * 128 * N * N / ms / 1e9  # causal: half of 4*N^2*Hq*D
        except Exception as e:  # noqa: BLE001
            out[name + "_error"] = repr(e)[:200]
    log("dense prompt", out)
    RESULTS["dense"].append(out)


def time_decode(batch, ctx, q_len=1):
    prob = hb.make_big_problem([q_len] * batch, [ctx] * batch, dtype=torch.bfloat16, seed=batch + ctx)
    args = prob.msa_args()
    bytes_idx, bytes_kv, _ = hb.decode_bytes(batch, ctx, q_len)
    need = bytes_idx + bytes_kv
    copies = max(1, min(8, math.ceil(200e6 / need)))  # rotate inputs so L2 does not flatter
    probs = [args] + [hb.make_big_problem([q_len] * batch, [ctx] * batch, dtype=torch.bfloat16, seed=i).msa_args()
                      for i in range(1, copies)]

    def step():
        for a in probs:
            msa_sgl.msa_attention(**a)

    step()
    torch.cuda.synchronize()
    ms = hb.bench_graph_ms(step) / copies
    dense, best = dense_decode_ms(batch, ctx, q_len)
    rec = dict(batch=batch, ctx=ctx, q_len=q_len, msa_ms=ms, gbps=need / ms / 1e6, dense=dense,
               speedup_vs_dense=best / ms, copies=copies)
    log("decode", rec)
    RESULTS["decode"].append(rec)


def dense_decode_ms(batch, ctx, q_len=1):
    """Dense decode over same-length contiguous K/V (M3 shapes, bf16) as CUDA-graph replays:
    ({"flash": ms, "cudnn": ms} with "<name>_error" for a backend that fails, the fastest ms)."""
    from torch.nn.attention import SDPBackend

    q4 = torch.randn(batch, 64, q_len, 128, device="cuda", dtype=torch.bfloat16)
    k4 = torch.randn(batch, 4, ctx, 128, device="cuda", dtype=torch.bfloat16)
    v4 = torch.randn_like(k4)
    dense = {}
    for name, be in (("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION)):
        try:
            _sdpa(q4, k4, v4, be, False)
            torch.cuda.synchronize()
            dense[name] = hb.bench_graph_ms(lambda: _sdpa(q4, k4, v4, be, False))
        except Exception as e:  # noqa: BLE001
            dense[name + "_error"] = repr(e)[:120]
    ok = [v for k, v in dense.items() if not k.endswith("_error")]
    return dense, (min(ok) if ok else float("nan"))


def run_bench(quick):
    for N in ([16384] if quick else [16384, 131072, 262144]):
        dense_whole_prompt(N)
        free()
    cases = [(0, 16384), (114688, 16384)] + ([] if quick else [(1032192, 16384)])
    for P, C in cases:
        RESULTS["prefill"].append(time_prefill(P, C))
        free()
    if not quick:  # whole 128K prompt in 16K chunks (P = 0..112K)
        for P in range(16384, 114688, 16384):
            RESULTS["prefill"].append(time_prefill(P, 16384, dense=False, tag="128k_prompt"))
            free()
    for batch, ctx in ([(1, 32768), (8, 131072)] if quick else
                       [(1, 32768), (1, 131072), (1, 1 << 20), (8, 32768), (8, 131072), (8, 1 << 20), (64, 32768),
                        (64, 131072)]):
        try:
            time_decode(batch, ctx)
        except Exception as e:  # noqa: BLE001
            RESULTS["errors"].append(f"decode {batch}x{ctx}: {e!r}")
            log("DECODE FAILED", traceback.format_exc())
        free()
    if not quick:
        time_decode(1, 131072, q_len=8)


def run_variants():
    attn_variants = [
        dict(method="q_outer"),
        dict(method="kv_outer"),
        dict(method="kv_outer", stop_after="tiles"),
        dict(method="kv_outer", stop_after="partial"),
        dict(method="kv_outer", workspace_bytes=1 << 32),
    ]
    for P, C in [(114688, 16384), (1032192, 16384)]:
        for opts in attn_variants:
            try:
                RESULTS["variants"].append(time_prefill(P, C, dense=False, tag="attn " + " ".join(
                    f"{k[:3]}={v}" for k, v in opts.items()), attn_opts=opts))
            except Exception as e:  # noqa: BLE001
                RESULTS["errors"].append(f"attn variant {opts}: {e!r}")
                log("VARIANT FAILED", repr(e)[:300])
            free()
    for P, C in [(32768, 1024), (32768, 2048), (32768, 4096)]:  # the q_outer / kv_outer crossover
        for method in ("q_outer", "kv_outer"):
            RESULTS["variants"].append(time_prefill(P, C, dense=False, tag=f"crossover {method}",
                                                    attn_opts=dict(method=method)))
            free()


def _rel_l2(a, b) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def run_peer(quick, prefill_points=None):
    """SGLang's built-in kernels beside msa_sgl on the same inputs: agreement and time.
    ``prefill_points`` (cached-prefix lengths): those 16K chunks only, no decode cases."""
    import peer_sglang as ps

    sg, err = ps.load()
    if sg is None:
        RESULTS["errors"].append(f"sglang peer not importable: {err}")
        log("peer: sglang not importable", err)
        return
    cases = [(0, 16384), (114688, 16384)] + ([] if quick else [(507904, 16384), (1032192, 16384)])
    if prefill_points is not None:
        cases = [(P, 16384) for P in prefill_points]
    for P, C in cases:
        try:
            prob = hb.make_big_problem([C], [P + C], dtype=torch.bfloat16, seed=P + 11)
            call = ps.SGLangCall(sg, prob)
            topk_sg = call.prefill_indexer()
            out_sg = call.prefill_attn(topk_sg)
            ia = prob.index_args()
            topk = ops.index_topk(**ia)
            same = (ps.as_msa_topk(topk_sg) == topk).all(-1).float().mean().item()
            # main branch on SGLang's own selection: outputs must agree within bf16 rounding
            out_on_sg = ops.sparse_attention(**prob.attention_args(ps.as_msa_topk(topk_sg)))
            rel = _rel_l2(out_on_sg, out_sg.view_as(out_on_sg))
            t_sg_idx = hb.bench_ms(call.prefill_indexer, rep=100)
            t_sg_attn = hb.bench_ms(lambda: call.prefill_attn(topk_sg), rep=100)
            t_idx = hb.bench_ms(lambda: ops.index_topk(**ia), rep=100)
            aa = prob.attention_args(topk)
            t_attn = hb.bench_ms(lambda: ops.sparse_attention(**aa), rep=100)
            # the whole call as users make it (msa_attention: with the dense rows, NOTES.md v19)
            t_call = hb.bench_ms(lambda: msa_sgl.msa_attention(**prob.msa_args()), rep=100)
            rec = dict(kind="prefill", P=P, C=C, same_selection_rows=same, out_rel_l2_on_sglang_selection=rel,
                       sglang_index_ms=t_sg_idx, sglang_attn_ms=t_sg_attn, sglang_total_ms=t_sg_idx + t_sg_attn,
                       msa_index_ms=t_idx, msa_attn_ms=t_attn, msa_total_ms=t_idx + t_attn,
                       speedup=(t_sg_idx + t_sg_attn) / (t_idx + t_attn), msa_call_ms=t_call,
                       speedup_call=(t_sg_idx + t_sg_attn) / t_call)
            RESULTS["peer"].append(rec)
            log("peer", rec)
        except Exception as e:  # noqa: BLE001
            RESULTS["errors"].append(f"peer prefill {P},{C}: {e!r}"[:400])
            log("PEER FAILED", traceback.format_exc()[-1500:])
        free()
    decode_cases = [(1, 131072)] if quick else [(1, 131072), (1, 1 << 20), (8, 131072), (64, 32768)]
    for batch, ctx in ([] if prefill_points is not None else decode_cases):
        try:
            prob = hb.make_big_problem([1] * batch, [ctx] * batch, dtype=torch.bfloat16, seed=batch + ctx)
            call = ps.SGLangCall(sg, prob)
            out_sg, topk_sg = call.decode()
            topk = msa_sgl.index_topk(**prob.index_args())
            same = (ps.as_msa_topk(topk_sg) == topk).all(-1).float().mean().item()
            out_on_sg = ops.sparse_attention(**prob.attention_args(ps.as_msa_topk(topk_sg)))
            rel = _rel_l2(out_on_sg, out_sg.view_as(out_on_sg))
            args = prob.msa_args()
            t_sg = hb.bench_graph_ms(call.decode)
            t_msa = hb.bench_graph_ms(lambda: msa_sgl.msa_attention(**args))
            rec = dict(kind="decode", batch=batch, ctx=ctx, same_selection_rows=same,
                       out_rel_l2_on_sglang_selection=rel, sglang_ms=t_sg, msa_ms=t_msa, speedup=t_sg / t_msa)
            RESULTS["peer"].append(rec)
            log("peer", rec)
        except Exception as e:  # noqa: BLE001
            RESULTS["errors"].append(f"peer decode {batch},{ctx}: {e!r}"[:400])
            log("PEER FAILED", traceback.format_exc()[-1500:])
        free()


def summary():
    lines = ["", f"card {RESULTS['env'].get('card')} driver {RESULTS['env'].get('driver')} torch "
             f"{RESULTS['env'].get('torch')} triton {RESULTS['env'].get('triton')}"]
    for c in RESULTS["checks"]:
        lines.append(f"check {c['name']:<34} rows {c['rows']:>3} rel_l2 kv {c['rel_l2']:.2e} q {c['q_outer_rel_l2']:.2e} "
                     f"kv-vs-q {c['forms_rel_l2']:.1e} lse {c['lse_abs']:.1e} ties {c['tie_rows']}")
    for d in RESULTS["dense"]:
        lines.append(f"dense prompt N={d['N']:>7}: " + " ".join(f"{k}={v:.2f}" for k, v in d.items() if isinstance(v, float)))
    for r in RESULTS["prefill"] + RESULTS["variants"]:
        lines.append(f"prefill P={r['P']:>7} C={r['C']} {r['tag']:<22} idx {r['index_ms']:7.2f} ms "
                     f"({r['index_tflops']:5.0f} TF/s) attn {r['attn_ms']:7.2f} ms ({r['attn_tflops']:5.0f} TF/s) "
                     f"total {r['total_ms']:7.2f}" + (f" dense {r['dense_ms']:.2f} ({r.get('dense_backend')}) x{r['speedup_vs_dense']:.2f}" if 'dense_ms' in r else ""))
    for r in RESULTS["peer"]:
        if r["kind"] == "prefill":
            lines.append(f"vs sglang prefill P={r['P']:>7}: sglang {r['sglang_index_ms']:.2f}+{r['sglang_attn_ms']:.2f} = "
                         f"{r['sglang_total_ms']:.2f} ms, msa {r['msa_index_ms']:.2f}+{r['msa_attn_ms']:.2f} = "
                         f"{r['msa_total_ms']:.2f} ms, x{r['speedup']:.2f}; msa_attention {r['msa_call_ms']:.2f} ms, "
                         f"x{r['speedup_call']:.2f}; same sel {r['same_selection_rows']:.4f} "
                         f"out rel {r['out_rel_l2_on_sglang_selection']:.1e}")
        else:
            lines.append(f"vs sglang decode b={r['batch']} ctx={r['ctx']}: sglang {r['sglang_ms']:.4f} ms msa "
                         f"{r['msa_ms']:.4f} ms x{r['speedup']:.2f}; same sel {r['same_selection_rows']:.4f} "
                         f"out rel {r['out_rel_l2_on_sglang_selection']:.1e}")
    for d in RESULTS["decode"]:
        lines.append(f"decode b={d['batch']:>2} ctx={d['ctx']:>7} q={d['q_len']} msa {d['msa_ms']:.4f} ms "
                     f"{d['gbps']:.0f} GB/s dense {d['dense']} x{d['speedup_vs_dense']:.2f}")
    lines += [f"ERROR {e}" for e in RESULTS["errors"]]
    print("\n".join(lines))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--variants", action="store_true")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--peer", action="store_true")
    ap.add_argument("--peer-prefill", help="with --peer: only 16K chunks after these cached lengths (P,P,...)")
    a = ap.parse_args()
    env_info()
    try:
        if a.check:
            run_checks(a.quick)
        if a.variants:
            run_variants()
        if a.peer:
            run_peer(a.quick, None if a.peer_prefill is None else [int(v) for v in a.peer_prefill.split(",")])
        if a.bench:
            run_bench(a.quick)
    finally:
        out = Path(os.environ.get("OUT", "."))
        (out / "gpu_run.json").write_text(json.dumps(RESULTS, indent=1))
        summary()


if __name__ == "__main__":
    main()
