"""Dense rows (main_branch._dense_rows_kernel) against the KV-outer form for them, one device call.

    PYTHONPATH=$PWD python benchmarks/dense_ab.py            # on / off, peers
    PYTHONPATH=$PWD python benchmarks/dense_ab.py variants   # the dense kernel's launch variants
    PYTHONPATH=$PWD python benchmarks/dense_ab.py map --old OLD_MAIN_BRANCH_PY  # the tile map (v20)
    PYTHONPATH=$PWD python benchmarks/dense_ab.py short   # launch variants on short prompts (v20b)

M3 shapes (bf16). A 16K chunk after 0 and 1024 cached tokens (the first 2048 - P rows dense):
the main branch with and without dense rows and the whole chunk (msa_attention, _DENSE_ROWS on /
off). "variants": the dense kernel's launch variants, alone on the 2048 dense rows of a P = 0
chunk and through msa_attention on all-dense prompts. Short prompts (every row dense: the index
branch skipped) and a 4K prompt (half dense): msa_attention on / off beside cuDNN SDPA over
the same tokens. Rounds interleaved; outputs on / off compared (relative L2, max). Appends to
$OUT/dense_ab.json.
"map": msa_attention on calls whose rows are all dense (prompts up to 2048 tokens, many short
ones, decode-like steps of 1-4 queries on contexts up to 2048) and on a P = 0 chunk, with the
dense kernel's tile map (the default), its shape grid (every request the longest one's tiles),
the kernel of an older main_branch.py (--old; its launch, dense rows forced on), and without
dense rows; CUDA-graph replays (the API's host work would set the small calls' time) and plain
timings. Writes $OUT/dense_map.json.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

import msa_sgl
from harness import bench as hb
from msa_sgl import ops

mb = ops.main_branch


def rel(a, b):
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm())


def sdpa_ms(q_lens, prob):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    n, b = q_lens[0], len(q_lens)
    a = prob.args
    q4 = a["q"].view(b, n, *a["q"].shape[1:]).transpose(1, 2)
    k4 = torch.randn(b, a["k_cache"].shape[2], n, a["q"].shape[2], device="cuda", dtype=a["q"].dtype)
    v4 = torch.randn_like(k4)

    def run():
        with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
            return F.scaled_dot_product_attention(q4, k4, v4, is_causal=True, enable_gqa=True)

    try:
        run()
        return hb.bench_ms(run, rep=100)
    except Exception as e:  # noqa: BLE001
        return repr(e)[:200]


def msa_call(prob, dense):
    """msa_attention with the dense rows on or off (main_branch._DENSE_ROWS)."""
    mb._DENSE_ROWS = dense
    try:
        return msa_sgl.msa_attention(**prob.msa_args())
    finally:
        mb._DENSE_ROWS = True


def chunk_point(P, C, rec):
    prob = hb.make_big_problem([C], [P + C], dtype=torch.bfloat16, seed=P + 7)
    topk = ops.index_topk(**prob.index_args())
    aa = prob.attention_args(topk)
    off = ops.sparse_attention(**aa, method="kv_outer")
    on = ops.sparse_attention(**aa, method="kv_outer", dense_rows=True)
    n_dense = max(0, min(C, 2048 - P))
    rec.update(n_dense=n_dense, finite=bool(torch.isfinite(on).all()), rel_all=rel(on, off),
               rel_dense=rel(on[:n_dense], off[:n_dense]) if n_dense else None,
               bitwise_sparse_rows=bool(torch.equal(on[n_dense:], off[n_dense:])))
    for rnd in range(3):
        for dense in (False, True):
            kw = dict(method="kv_outer", dense_rows=dense)
            rec.setdefault(f"main_{'on' if dense else 'off'}", []).append(
                hb.bench_ms(lambda: ops.sparse_attention(**aa, **kw), rep=60))
            rec.setdefault(f"chunk_{'on' if dense else 'off'}", []).append(
                hb.bench_ms(lambda: msa_call(prob, dense), rep=60))
    return rec


def prompt_point(q_lens, rec):
    prob = hb.make_big_problem(q_lens, q_lens, dtype=torch.bfloat16, seed=len(q_lens) + q_lens[0])
    off, on = msa_call(prob, False), msa_call(prob, True)
    rec.update(finite=bool(torch.isfinite(on).all()), rel_all=rel(on, off), max_abs=float((on.float() - off.float()).abs().max()))
    for rnd in range(3):
        for dense in (False, True):
            rec.setdefault(f"msa_{'on' if dense else 'off'}", []).append(
                hb.bench_ms(lambda: msa_call(prob, dense), rep=60))
        if len(set(q_lens)) == 1:
            rec.setdefault("cudnn", []).append(sdpa_ms(q_lens, prob))
    return rec


# launch variants of the dense kernel: (sub, warps, stages, tile rows)
KNOBS = {"s64w8st3": (64, 8, 3, 128), "s128w8st2": (128, 8, 2, 128), "s64w4st3r64": (64, 4, 3, 64)}


def set_knobs(k):
    """(sub, warps, stages, tile rows[, one-stage keys]): a variant's launch, or ``saved`` back; a
    variant runs at its own stage count everywhere (main_branch._DENSE_ONE_STAGE_KEYS 0)."""
    mb._DENSE_SUB, mb._DENSE_WARPS, mb._DENSE_STAGES, mb._DENSE_TILE_ROWS = k[:4]
    mb._DENSE_ONE_STAGE_KEYS = k[4] if len(k) > 4 else 0


def variants():
    """The dense kernel's launch variants: alone on the 2048 dense rows of a P = 0 chunk, and
    msa_attention on all-dense prompts, three rounds interleaved."""
    saved = (mb._DENSE_SUB, mb._DENSE_WARPS, mb._DENSE_STAGES, mb._DENSE_TILE_ROWS, mb._DENSE_ONE_STAGE_KEYS)
    res = {}
    prob = hb.make_big_problem([16384], [16384], dtype=torch.bfloat16, seed=7)
    a = prob.args
    ref = ops.sparse_attention(**prob.attention_args(ops.index_topk(**prob.index_args())), method="kv_outer")
    out = torch.empty_like(ref)
    lse = torch.empty(ref.shape[:2], dtype=torch.float32, device="cuda")
    prompts = {n: hb.make_big_problem(q, q, dtype=torch.bfloat16, seed=len(q)) for n, q in
               (("1x2048", [2048]), ("8x2048", [2048] * 8), ("32x512", [512] * 32), ("1x1024", [1024]))}
    base = {n: msa_sgl.msa_attention(**p.msa_args()) for n, p in prompts.items()}
    try:
        for rnd in range(2):
            for name, k in KNOBS.items():
                set_knobs(k)

                def run():
                    mb.launch_dense_rows(a["q"], a["k_cache"], a["v_cache"], a["page_table"], a["cu_seqlens_q"],
                                         a["seq_lens_k"], prob.config, out, lse)
                try:
                    run()
                    r = dict(chunk_dense_ms=hb.bench_ms(run, rep=60), rel=rel(out[:2048], ref[:2048]))
                    for n, p in prompts.items():
                        o = msa_sgl.msa_attention(**p.msa_args())
                        r[n] = hb.bench_ms(lambda: msa_sgl.msa_attention(**p.msa_args()), rep=60)
                        r[n + "_rel"] = rel(o, base[n])
                except Exception as e:  # noqa: BLE001
                    r = repr(e)[:200]
                res.setdefault(name, []).append(r)
    finally:
        set_knobs(saved)
    return res


def _time_variants(prob, variants, restore, benches):
    """msa_attention on ``prob`` under each variant (name -> function that applies it; ``restore``
    after each), 3 rounds interleaved: the first round's outputs, and per bench (key -> timing
    function) each variant's times and their median (key + "_median"); failures under "errors"."""
    outs, rec = {}, {key: {} for key in benches}
    for rnd in range(3):
        for name, apply in variants.items():
            apply()
            try:
                if rnd == 0:
                    outs[name] = msa_sgl.msa_attention(**prob.msa_args())
                for key, bench in benches.items():
                    rec[key].setdefault(name, []).append(bench(lambda: msa_sgl.msa_attention(**prob.msa_args())))
            except Exception as e:  # noqa: BLE001
                rec.setdefault("errors", {})[name] = repr(e)[:300]
            finally:
                restore()
    for key in benches:
        rec[key + "_median"] = {n: sorted(v)[len(v) // 2] for n, v in rec[key].items()}
    return outs, rec


def _record_point(res, rec, name):
    """Prints a point (without its per-round times) and rewrites $OUT/``name`` with every point so
    far, so a run cut short keeps what it measured."""
    print(json.dumps({k: v for k, v in rec.items() if not isinstance(v, dict) or not k.endswith("_ms")}), flush=True)
    res["points"].append(rec)
    (Path(os.environ.get("OUT", ".")) / name).write_text(json.dumps(res, indent=1))


def map_study(old_path):
    """The tile map against the shape grid, an older kernel and no dense rows (module doc)."""
    old = hb.load_old_main_branch(old_path) if old_path else None
    saved = dict(launch=mb.launch_dense_rows, pay=mb.dense_rows_pay, map_max=mb._DENSE_MAP_MAX_BATCH,
                 waste=mb._DENSE_MAX_WASTE)

    def restore():
        mb.launch_dense_rows, mb.dense_rows_pay = saved["launch"], saved["pay"]
        mb._DENSE_MAP_MAX_BATCH, mb._DENSE_MAX_WASTE, mb._DENSE_ROWS = saved["map_max"], saved["waste"], True

    def variant(name):
        restore()
        if name == "grid":
            mb._DENSE_MAP_MAX_BATCH, mb._DENSE_MAX_WASTE = 0, 1 << 40
        elif name == "old":
            mb.launch_dense_rows, mb.dense_rows_pay = old.launch_dense_rows, lambda *a, **k: True
        elif name == "off":
            mb._DENSE_ROWS = False

    names = ["map", "grid"] + (["old"] if old else []) + ["off"]
    points = [("1x2048", [2048], [2048]), ("1x1024", [1024], [1024]), ("8x2048", [2048] * 8, [2048] * 8),
              ("32x512", [512] * 32, [512] * 32), ("32x2048", [2048] * 32, [2048] * 32),
              ("64x256", [256] * 64, [256] * 64), ("256x64", [64] * 256, [64] * 256),
              ("1024x16", [16] * 1024, [16] * 1024), ("4x1500+300x30", [1500] * 4 + [30] * 300, [1500] * 4 + [30] * 300),
              ("decode_64_ctx1500", [1] * 64, [1500] * 64), ("decode_256_ctx1500", [1] * 256, [1500] * 256),
              ("decode_1024_ctx1500", [1] * 1024, [1500] * 1024), ("mtp4_128_ctx1000", [4] * 128, [1000] * 128),
              ("chunk16K_P0", [16384], [16384])]
    only = os.environ.get("MSA_MAP_POINTS")  # comma-separated point names: a subset
    if only:
        points = [p for p in points if p[0] in only.split(",")]
    res = dict(kind="map", old=old_path, env=dict(card=torch.cuda.get_device_name(), torch=torch.__version__,
                                                   triton=__import__("triton").__version__), points=[])
    try:
        for pname, q_lens, seq_lens in points:
            prob = hb.make_big_problem(q_lens, seq_lens, dtype=torch.bfloat16, seed=len(q_lens) + seq_lens[0])
            outs, rec = _time_variants(prob, {n: (lambda n=n: variant(n)) for n in names}, restore,
                                       {"graph_ms": hb.bench_graph_ms, "plain_ms": hb.bench_ms})
            base = outs.get("map")
            if base is not None:
                rec["finite"] = bool(torch.isfinite(base).all())
                rec["bitwise_vs_map"] = {n: bool(torch.equal(o, base)) for n, o in outs.items()}
                rec["rel_vs_map"] = {n: rel(o, base) for n, o in outs.items()}
            _record_point(res, dict(point=pname, **rec), "dense_map.json")
            prob = outs = base = None
            torch.cuda.empty_cache()
    finally:
        restore()


def short_study():
    """Launch variants of the dense kernel (KNOBS_SHORT) through msa_attention on calls of many
    short prompts (every row dense, the tile map), CUDA-graph replays, 3 rounds interleaved."""
    saved = (mb._DENSE_SUB, mb._DENSE_WARPS, mb._DENSE_STAGES, mb._DENSE_TILE_ROWS, mb._DENSE_ONE_STAGE_KEYS)
    points = [("32x512", [512] * 32), ("64x256", [256] * 64), ("128x128", [128] * 128), ("256x64", [64] * 256),
              ("1024x16", [16] * 1024), ("8x2048", [2048] * 8)]
    res = dict(kind="short", env=dict(card=torch.cuda.get_device_name(), torch=torch.__version__,
                                      triton=__import__("triton").__version__), knobs=KNOBS_SHORT, points=[])
    try:
        for pname, q_lens in points:
            prob = hb.make_big_problem(q_lens, q_lens, dtype=torch.bfloat16, seed=len(q_lens))
            outs, rec = _time_variants(prob, {n: (lambda k=k: set_knobs(k)) for n, k in KNOBS_SHORT.items()},
                                       lambda: set_knobs(saved), {"graph_ms": hb.bench_graph_ms})
            base = outs.get("r64w4st3")
            if base is not None:
                rec["rel_vs_shipped"] = {n: rel(o, base) for n, o in outs.items()}
            _record_point(res, dict(point=pname, **rec), "dense_short.json")
            prob = outs = base = None
            torch.cuda.empty_cache()
    finally:
        set_knobs(saved)


# (sub, warps, stages, tile rows[, one-stage keys]) for short prompts ("shipped": the one-stage rule)
KNOBS_SHORT = {"r64w4st3": (64, 4, 3, 64), "shipped": (64, 4, 3, 64, 512), "r128w8st3": (64, 8, 3, 128),
               "r128w8st2s128": (128, 8, 2, 128), "r64w4st2": (64, 4, 2, 64), "r32w4st3": (64, 4, 3, 32),
               "r64w4st1": (64, 4, 1, 64)}
if os.environ.get("MSA_SHORT_KNOBS"):  # comma-separated names: a subset
    KNOBS_SHORT = {k: v for k, v in KNOBS_SHORT.items() if k in os.environ["MSA_SHORT_KNOBS"].split(",")}


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "short":
        short_study()
        return
    if len(sys.argv) > 1 and sys.argv[1] == "map":
        map_study(sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--old" else None)
        return
    out_path = Path(os.environ.get("OUT", ".")) / "dense_ab.json"
    res = json.loads(out_path.read_text()) if out_path.exists() else []
    if len(sys.argv) > 1 and sys.argv[1] == "variants":
        rec = dict(kind="variants", **variants())
        print(json.dumps(rec), flush=True)
        res.append(rec)
        out_path.write_text(json.dumps(res, indent=1))
        return
    for P in (0, 1024):
        rec = chunk_point(P, 16384, dict(kind="chunk", P=P, C=16384))
        print(rec, flush=True)
        res.append(rec)
        out_path.write_text(json.dumps(res, indent=1))
        torch.cuda.empty_cache()
    for q_lens in ([2048], [1024], [2048] * 8, [512] * 32, [4096], [2048] * 32):
        rec = prompt_point(q_lens, dict(kind="prompt", q_lens=f"{len(q_lens)}x{q_lens[0]}"))
        print(rec, flush=True)
        res.append(rec)
        out_path.write_text(json.dumps(res, indent=1))
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
