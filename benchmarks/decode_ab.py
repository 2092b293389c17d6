"""Decode-step A/B studies on one device call: variants of one knob, same inputs, interleaved.

    python benchmarks/decode_ab.py pdl      # programmatic dependent launch per kernel (NOTES.md v7)
    python benchmarks/decode_ab.py split    # index-branch splits per request (NOTES.md v8)
    python benchmarks/decode_ab.py split --wide   # the same with SGLang's page-table width (1M)
    python benchmarks/decode_ab.py cap --batch1   # the most splits per tile (batch 1 points only)
    python benchmarks/decode_ab.py floor --wide   # the runtime split floor (NOTES.md v8)
    python benchmarks/decode_ab.py stages [--fp8] # pipeline depth of the index scan (NOTES.md v9)
    python benchmarks/decode_ab.py chunk --batch1 # finalize: candidates merged per row at a time
    python benchmarks/decode_ab.py fp8cap --batch1 --fp8  # more splits per tile with 8-bit keys
    python benchmarks/decode_ab.py fp8cap_rule --fp8 --points ...  # v15's cap rule against fixed caps
    python benchmarks/decode_ab.py warps [--fp8]  # warps per decode scan program (NOTES.md v12)
    python benchmarks/decode_ab.py ahead --fp8    # 8-bit key scales prefetched a block ahead (v12)
    python benchmarks/decode_ab.py fuse [--fp8]   # index lists merged in the slot kernel (v13)
    python benchmarks/decode_ab.py fuse_pdl --points 1x131072,2x131072 [--fp8]  # its PDL trigger, chosen points
    python benchmarks/decode_ab.py fuse_rule --points 1x131072,4x131072,1x131072x8 [--fp8]  # the shipped rule
    python benchmarks/decode_ab.py keysm [--fp8] [--points ...]  # scan scores as keys x queries (v14)
    python benchmarks/decode_ab.py keysm_rule --fp8 --points ... # its shipped rule against never / always
    python benchmarks/decode_ab.py slotsub [--fp8] [--points ...]  # slot kernel in pipelined sub-blocks (v16)
    python benchmarks/decode_ab.py slotsub_rule [--fp8] --points ...  # its shipped rule (v16)
    python benchmarks/decode_ab.py heads [--fp8] [--points ...]  # list merge: heads first or every list (v16)
    python benchmarks/decode_ab.py h200fp8 --fp8 --points ...   # 8-bit keys' launch knobs on the H200 (v29g)
    python benchmarks/decode_ab.py fp8x --fp8 --points ...      # 8-bit keys: programs an SM (v29h)
    python benchmarks/decode_ab.py fp8rule --fp8 --points ...   # its rule: one wave of 4 an SM from 8 tiles (v29i)
    python benchmarks/decode_ab.py bf16wave --points ...        # the same for bf16 keys, 3 an SM (v29k; off)
    python benchmarks/decode_ab.py stages64 --lead --points ... # bf16 scan stages at 2-3 programs an SM (v31)
    python benchmarks/decode_ab.py cap1m --lead --points ...    # the split cap at batch 1-2, 512K-1M (v31d)
    python benchmarks/decode_ab.py cap1m_fp8 --fp8 --lead --points ...  # the same, 8-bit keys (v31d)
    python benchmarks/decode_ab.py cap128k_fp8 --fp8 --lead --points ...  # 8-bit, batch 1, narrow tables (v31e)
    python benchmarks/decode_ab.py mtp --lead --points ...      # MTP: tile_grid's tight bound, a bf16 cap (v32)
    python benchmarks/decode_ab.py mtp_fp8 --fp8 --lead --points ...  # the bound with 8-bit keys (v32)
    python benchmarks/decode_ab.py mtp_order [--fp8] --lead --points ...  # the bound x the grid's order (v32b)
    python benchmarks/decode_ab.py b1scan --lead --points ...   # bf16 scan at batch 1-2: stages, warps (v32d)
    python benchmarks/decode_ab.py mtp_exact [--fp8] --lead --points ...  # MTP splits for the real tiles (v32e)

Per point (MiniMax-M3 shapes, bf16, graph replays of back-to-back steps, inputs rotated as in
decode_run.py): the wrapper's step in each variant. Rounds interleave the variants (each round
starting one variant later) and report medians, so clock drift does not favour one; outputs must
be bitwise equal across variants.
pdl: each kernel lets its successor launch right after its own wait ("early", mode 1) or when
it exits (mode 2); "_gap" variants put one small non-PDL kernel between steps, as a model's
other layers do. split: fewer blocks per split (more, shorter programs, longer merge).
--fp8: 8-bit index keys (the problem's keys through msa_sgl.quantize_index_keys).
--lead: each variant's step also timed behind the suite's matmul lead (graph replays, CUDA events;
the suite's event column) beside the back-to-back replays. Writes $OUT/decode_ab_<study>.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import decode_run as dr  # noqa: E402
import gpu_run  # noqa: E402
import test_bench_kernels as tbk  # noqa: E402  (the suite's matmul lead)
from harness import bench as hb  # noqa: E402
from msa_sgl import decode as msa_decode  # noqa: E402
from msa_sgl.ops import index_branch, main_branch, metadata  # noqa: E402

POINTS = [(1, 32768), (1, 131072), (1, 1 << 20), (8, 32768), (8, 131072), (8, 1 << 20), (64, 131072)]
ROUNDS = 3
_KERNELS = ("index_partial", "index_finalize", "slot_partial", "merge_heads", "q_outer")


def _per_kernel(**modes):
    return {k: modes.get(k, 2) for k in _KERNELS}


def _set(**knobs):
    """A variant: module globals to set (pdl: the wrapper's pdl argument)."""
    return knobs


_DEFAULT_TRIGGER = dict(metadata.PDL_TRIGGER)
_DEFAULT_TIGHT = metadata.TIGHT_TILE_GRID
STUDIES = {
    "pdl": {
        "off": _set(pdl=False),
        "all_early": _set(PDL_TRIGGER=1),
        "all_exit": _set(PDL_TRIGGER=2),
        "index_early": _set(PDL_TRIGGER=_per_kernel(index_partial=1, index_finalize=1)),
        "partial_early": _set(PDL_TRIGGER=_per_kernel(index_partial=1)),
        "to_slot_early": _set(PDL_TRIGGER=_per_kernel(index_partial=1, index_finalize=1, slot_partial=1)),
        "merge_early": _set(PDL_TRIGGER=_per_kernel(merge_heads=1, q_outer=1)),
        "off_gap": _set(pdl=False, gap=True),
        "all_early_gap": _set(PDL_TRIGGER=1, gap=True),
    },
    "cap": {  # the most splits per tile (1 or 2 programs per SM at batch 1) x the block floor
        "min8_max256": _set(_MIN_BLOCKS_PER_SPLIT=8, _MAX_SPLIT=256),
        "min2_max128": _set(_MIN_BLOCKS_PER_SPLIT=2, _MAX_SPLIT=128),
        "min4_max128": _set(_MIN_BLOCKS_PER_SPLIT=4, _MAX_SPLIT=128),
        "min2_max96": _set(_MIN_BLOCKS_PER_SPLIT=2, _MAX_SPLIT=96),
        "min2_max192": _set(_MIN_BLOCKS_PER_SPLIT=2, _MAX_SPLIT=192),
    },
    "floor": {  # the runtime split floor (v8's choice) against none
        "floor8_pieces64": _set(),
        "no_floor": _set(_SPLIT_FLOOR=1, _SPLIT_PIECES=1),
    },
    "stages": {  # Triton num_stages of the index scan for decode tiles (x programs per SM)
        "st3": _set(_SHORT_TILE_STAGES=3),
        "st5": _set(_SHORT_TILE_STAGES=5),
        "st6": _set(_SHORT_TILE_STAGES=6),
        "st8": _set(_SHORT_TILE_STAGES=8),
        "st6_x3": _set(_SHORT_TILE_STAGES=6, _SPLIT_PROGRAMS_PER_SM=3),
    },
    "fp8cap": {  # the most splits per tile with 8-bit keys (batch 1: the cap binds), at any width
        "cap128": _set(_MAX_SPLIT_FP8=128, _FP8_NARROW_PAGES=0),
        "cap256": _set(_FP8_NARROW_PAGES=0),
        "cap384": _set(_MAX_SPLIT_FP8=384, _FP8_NARROW_PAGES=0),
        "cap512": _set(_MAX_SPLIT_FP8=512, _FP8_NARROW_PAGES=0),
    },
    "fp8cap_rule": {  # v15's rule (cap 128 up to 1024-block tables) against 256 / 128 at any width
        "rule": _set(),
        "cap256": _set(_FP8_NARROW_PAGES=0),
        "cap128": _set(_MAX_SPLIT_FP8=128),
    },
    "warps": {  # num_warps of the index scan for decode tiles x the most splits per tile
        "w4": _set(),
        "w8": _set(_SHORT_TILE_WARPS=8),
        "w8_cap128": _set(_SHORT_TILE_WARPS=8, _MAX_SPLIT=128, _MAX_SPLIT_FP8=128),
        "w4_cap128": _set(_MAX_SPLIT=128, _MAX_SPLIT_FP8=128),
        "w8_x4": _set(_SHORT_TILE_WARPS=8, _SPLIT_PROGRAMS_PER_SM=4, _SPLIT_PROGRAMS_PER_SM_FP8=4),
    },
    "ahead": {  # 8-bit keys: key scales prefetched a block ahead, for tiles up to this many rows
        "none": _set(_SCALE_AHEAD_MAX_ROWS=0),
        "rows16": _set(_SCALE_AHEAD_MAX_ROWS=16),
        "all": _set(_SCALE_AHEAD_MAX_ROWS=128),
    },
    "fuse": {  # the split form's slot kernel merges the index lists (no finalize kernel), or not (v13)
        "fused": _set(FUSED_SELECT=True, PDL_TRIGGER=dict(_DEFAULT_TRIGGER, index_partial_fused_fp8=1)),
        "finalize": _set(FUSED_SELECT=False),
        "fused_cap132": _set(FUSED_SELECT=True, PDL_TRIGGER=dict(_DEFAULT_TRIGGER, index_partial_fused_fp8=1),
                             _MAX_SPLIT=132, _MAX_SPLIT_FP8=264),  # batch 1: 1 (2) programs on every SM
        "fused_nopdl": _set(FUSED_SELECT=True, pdl=False),
        "finalize_nopdl": _set(FUSED_SELECT=False, pdl=False),
    },
    "fuse_pdl": {  # the fused form x when the index scan lets the slot kernel launch (v13)
        "finalize": _set(FUSED_SELECT=False),
        "fused": _set(FUSED_SELECT=True, PDL_TRIGGER=dict(_DEFAULT_TRIGGER, index_partial_fused_fp8=1)),
        "fused_scan_exit": _set(FUSED_SELECT=True, PDL_TRIGGER=dict(_DEFAULT_TRIGGER, index_partial_fused=2,
                                                                      index_partial_fused_fp8=2)),
        "fused_nopdl": _set(FUSED_SELECT=True, pdl=False),
    },
    "fuse_rule": {  # the shipped rule (fused up to one slot program per SM) against never / always
        "rule": _set(),
        "never": _set(FUSED_SELECT=False),
        "always": _set(FUSED_SELECT=True),
    },
    "keysm": {  # block scores as keys x queries, forced off / on for tiles of <= 64 rows (NOTES.md v14)
        "off": _set(_KEYS_M_MAX_ROWS=0, _KEYS_M_MAX_ROWS_FP8=0),
        "keys_m": _set(_KEYS_M_MAX_ROWS=64, _KEYS_M_MAX_ROWS_FP8=64, _KEYS_M_MAX_SPLIT_BLOCKS=1 << 30),
    },
    "keysm_rule": {  # the shipped rule (index_branch._KEYS_M_*) against never / always
        "rule": _set(),
        "never": _set(_KEYS_M_MAX_ROWS=0, _KEYS_M_MAX_ROWS_FP8=0),
        "always": _set(_KEYS_M_MAX_ROWS=32, _KEYS_M_MAX_ROWS_FP8=32, _KEYS_M_MAX_SPLIT_BLOCKS=1 << 30,
                       _KEYS_M_MAX_BATCH=1 << 30),
        "any_batch": _set(_KEYS_M_MAX_BATCH=1 << 30),  # v14's first rule
        "batch4": _set(_KEYS_M_MAX_BATCH=4),
    },
    "chunk": {  # finalize: candidates (splits x 16) merged per row at a time
        "c1024": _set(_CHUNK_CANDIDATES=1024),
        "c2048": _set(_CHUNK_CANDIDATES=2048),
        "c4096": _set(_CHUNK_CANDIDATES=4096),
        "c512": _set(_CHUNK_CANDIDATES=512),
    },
    "slotsub": {  # the slot kernel's block in pipelined sub-blocks (main_branch._SLOT_SUB / _SLOT_STAGES)
        "whole": _set(_SLOT_SUB=0),
        "sub64_s2": _set(_SLOT_SUB=64, _SLOT_STAGES=2),
        "sub64_s3": _set(_SLOT_SUB=64, _SLOT_STAGES=3),
        "sub32_s3": _set(_SLOT_SUB=32, _SLOT_STAGES=3),
        "sub32_s5": _set(_SLOT_SUB=32, _SLOT_STAGES=5),
    },
    "heads": {  # the list merge: every list, or heads first where a row's lists exceed one chunk
        "all_lists": _set(_HEADS_MERGE=False),  # (index_branch._HEADS_MERGE; v16b's runs had an
        "heads": _set(_HEADS_MERGE=True),  # always-heads-first variant and a plan rule, since replaced)
    },
    "slotsub_rule": {  # the shipped rule (sub-blocks while several slot programs share an SM)
        "rule": _set(),
        "whole": _set(_SLOT_SUB=0),
        "sub64": _set(_SLOT_SUB=64),
    },
    "h200fp8": {  # 8-bit keys on the H200 (v29g): programs an SM, keys x queries on long splits, stages, warps
        "rule": _set(),
        "x2": _set(_SPLIT_PROGRAMS_PER_SM_FP8=2),
        "x4": _set(_SPLIT_PROGRAMS_PER_SM_FP8=4),
        "keysm_long": _set(_KEYS_M_MAX_SPLIT_BLOCKS=1 << 30),
        "x4_keysm_long": _set(_SPLIT_PROGRAMS_PER_SM_FP8=4, _KEYS_M_MAX_SPLIT_BLOCKS=1 << 30),
        "st8": _set(_SHORT_TILE_STAGES=8),
        "w8": _set(_SHORT_TILE_WARPS=8),
    },
    "fp8x": {  # 8-bit keys: programs an SM (v29h, after v29g's x4)
        "x3": _set(_SPLIT_PROGRAMS_PER_SM_FP8=3),
        "x4": _set(_SPLIT_PROGRAMS_PER_SM_FP8=4),
        "x5": _set(_SPLIT_PROGRAMS_PER_SM_FP8=5),
        "x6": _set(_SPLIT_PROGRAMS_PER_SM_FP8=6),
        "x8": _set(_SPLIT_PROGRAMS_PER_SM_FP8=8),
    },
    "fp8rule": {  # 8-bit keys: one wave of 4 programs an SM (v29i) against the rule before it and 4 rounding up
        "x3_ceil": _set(_FP8_ONE_WAVE_MIN_TILES=0),
        "x4_ceil": _set(_SPLIT_PROGRAMS_PER_SM_FP8=4, _FP8_ONE_WAVE_MIN_TILES=0),
        "rule": _set(),
        "wave_any": _set(_FP8_ONE_WAVE_MIN_TILES=1),  # (v29i's "rule": one wave at any tile count)
    },
    "stages64": {  # bf16 keys, 2-3 programs an SM: the scan at 6 stages (v31; 0ea58ec ran rule (= before) / st6
        "before": _set(_STAGED_PROGRAMS_PER_SM=0),  # (= rule now) / st5 / st8); rule_aa repeats the rule, so
        "rule": _set(),  # the rule / rule_aa spread is the column's own noise (v31g)
        "rule_aa": _set(),
        "st5": _set(_SHORT_TILE_STAGES=5),
    },
    "cap1m": {  # batch 1-2 at 512K-1M: the most splits per tile, bf16 keys (v31d; batch 1 wants 2 x SMs)
        "rule": _set(),
        "c256": _set(_MAX_SPLIT=256),
        "c264": _set(_MAX_SPLIT=512),  # 2 programs an SM at batch 1: 264 on 132 SMs
        "x4_c528": _set(_MAX_SPLIT=1024, _SPLIT_PROGRAMS_PER_SM=4),
    },
    "cap1m_fp8": {  # the same with 8-bit keys on tables past _FP8_NARROW_PAGES (v31d; 3 x SMs)
        "rule": _set(),
        "c396": _set(_MAX_SPLIT_FP8=1024),
        "x4_c528": _set(_MAX_SPLIT_FP8=1024, _SPLIT_PROGRAMS_PER_SM_FP8=4),
    },
    "mtp": {  # MTP tiles: tile_grid's tight bound (v32; "loose" = before) and a bf16 cap for 32-64-row tiles
        "loose": _set(TIGHT_TILE_GRID=False),  # on tables past _MTP_WIDE_PAGES ("all": on every table)
        "tight": _set(),
        "tight_aa": _set(),
        "mtp256": _set(_MAX_SPLIT_MTP=256),
        "mtp256_all": _set(_MAX_SPLIT_MTP=256, _MTP_WIDE_PAGES=0),
    },
    "mtp_order": {  # the tile bound x the partial kernel's grid order, (tiles, splits) or (splits, tiles) (v32b)
        "loose_tiles": _set(TIGHT_TILE_GRID=False, _SPLIT_MAJOR=False),  # before v32
        "tight_tiles": _set(_SPLIT_MAJOR=False),  # v32a's "tight"
        "loose_splits": _set(TIGHT_TILE_GRID=False),
        "tight_splits": _set(),
        "tight_splits_aa": _set(),
    },
    "b1scan": {  # bf16 keys, batch 1-2 (one or two scan programs an SM): key blocks in flight, warps (v32d)
        "rule": _set(),  # 6 stages: one key block ahead
        "st8": _set(_SHORT_TILE_STAGES=8),  # two
        "st10": _set(_SHORT_TILE_STAGES=10),  # three
        "w8": _set(_SHORT_TILE_WARPS=8),
        "st8_w8": _set(_SHORT_TILE_STAGES=8, _SHORT_TILE_WARPS=8),
    },
    "mtp_exact": {  # MTP at batch 2-8: splits aimed at the real tiles (uniform q) instead of tile_grid's bound (v32e)
        "rule": _set(),
        "f33": _set(_FORCE_N_SPLIT=33),
        "f66": _set(_FORCE_N_SPLIT=66),
        "f128": _set(_FORCE_N_SPLIT=128),
    },
    "mtp_fp8": {  # 8-bit keys: only the tile bound changes their plans (v32)
        "loose": _set(TIGHT_TILE_GRID=False),
        "tight": _set(),
    },
    "cap128k_fp8": {  # 8-bit keys, batch 1, tables up to _FP8_NARROW_PAGES: fewer, longer splits (v31e)
        "rule": _set(),  # _MAX_SPLIT (128)
        "c96": _set(_MAX_SPLIT=96),
        "c64": _set(_MAX_SPLIT=64),
        "c32": _set(_MAX_SPLIT=32),
    },
    "bf16wave": {  # bf16 keys: splits for one wave of 3 programs an SM (v29k), from 8 / 1 tiles, against the rule
        "rule": _set(),
        "wave8": _set(_BF16_ONE_WAVE_MIN_TILES=8),
        "wave1": _set(_BF16_ONE_WAVE_MIN_TILES=1),
    },
    "split": {
        "min8_x2": _set(_MIN_BLOCKS_PER_SPLIT=8, _SPLIT_PROGRAMS_PER_SM=2),
        "min4_x2": _set(_MIN_BLOCKS_PER_SPLIT=4, _SPLIT_PROGRAMS_PER_SM=2),
        "min2_x2": _set(_MIN_BLOCKS_PER_SPLIT=2, _SPLIT_PROGRAMS_PER_SM=2),
        "min1_x2": _set(_MIN_BLOCKS_PER_SPLIT=1, _SPLIT_PROGRAMS_PER_SM=2),
        "min2_x4": _set(_MIN_BLOCKS_PER_SPLIT=2, _SPLIT_PROGRAMS_PER_SM=4),
        "min4_x4": _set(_MIN_BLOCKS_PER_SPLIT=4, _SPLIT_PROGRAMS_PER_SM=4),
    },
}


_INDEX_KNOBS = ("_MIN_BLOCKS_PER_SPLIT", "_SPLIT_PROGRAMS_PER_SM", "_SPLIT_PROGRAMS_PER_SM_FP8", "_MAX_SPLIT",
                "_MAX_SPLIT_FP8", "_SPLIT_FLOOR", "_SPLIT_PIECES",
                "_SHORT_TILE_STAGES", "_CHUNK_CANDIDATES", "_SHORT_TILE_WARPS", "_SCALE_AHEAD_MAX_ROWS",
                "_KEYS_M_MAX_ROWS", "_KEYS_M_MAX_ROWS_FP8", "_KEYS_M_MAX_SPLIT_BLOCKS",
                "_KEYS_M_MAX_BATCH", "_FP8_NARROW_PAGES", "_HEADS_MERGE", "_FP8_ONE_WAVE_MIN_TILES",
                "_BF16_ONE_WAVE_MIN_TILES", "_STAGED_PROGRAMS_PER_SM", "_MAX_SPLIT_MTP", "_MTP_MIN_ROWS",
                "_MTP_WIDE_PAGES", "_SPLIT_MAJOR", "_FORCE_N_SPLIT")


_DEFAULT_KNOBS = {n: getattr(index_branch, n) for n in _INDEX_KNOBS}
_MAIN_KNOBS = ("_SLOT_SUB", "_SLOT_STAGES")
_DEFAULT_MAIN = {n: getattr(main_branch, n) for n in _MAIN_KNOBS}


def _apply(knobs):
    """The variant's knobs over the defaults: a knob one variant sets must not leak into the next
    (studies up to v8 leaked: see benchmarks/NOTES.md v9)."""
    unknown = (set(knobs) - set(_INDEX_KNOBS) - set(_MAIN_KNOBS)
               - {"PDL_TRIGGER", "FUSED_SELECT", "TIGHT_TILE_GRID", "pdl", "gap"})
    if unknown:  # a knob _apply would not reset between variants
        raise ValueError(f"decode_ab: knobs {sorted(unknown)} are not in _INDEX_KNOBS / _MAIN_KNOBS")
    metadata.PDL_TRIGGER = knobs.get("PDL_TRIGGER", _DEFAULT_TRIGGER)
    metadata.TIGHT_TILE_GRID = knobs.get("TIGHT_TILE_GRID", _DEFAULT_TIGHT)
    msa_decode.FUSED_SELECT = knobs.get("FUSED_SELECT")
    for name in _INDEX_KNOBS:
        setattr(index_branch, name, knobs.get(name, _DEFAULT_KNOBS[name]))
    for name in _MAIN_KNOBS:
        setattr(main_branch, name, knobs.get(name, _DEFAULT_MAIN[name]))


def point(variants, batch, ctx, q_len=1, width=None, fp8=False, lead=False):
    _, need = dr.compulsory_bytes(batch, ctx, q_len)
    copies = max(1, min(8, math.ceil(200e6 / need)))
    probs = [hb.make_big_problem([q_len] * batch, [ctx] * batch, dtype=torch.bfloat16, seed=batch + ctx + i)
             for i in range(copies)]
    if fp8:  # the same problems with 8-bit index keys
        for p in probs:
            p.k8 = hb.quantized_index_keys(p)
    gap = torch.zeros(1 << 16, device="cuda")
    wrappers, splits, stages, grids = {}, {}, {}, {}
    for name, knobs in variants.items():
        _apply(knobs)  # the wrapper sizes its workspace and plans with these
        wrappers[name] = [hb.planned_decode_wrapper(p, q_len, pdl=knobs.get("pdl", True), max_pages=width,
                                      index_fp8=fp8) for p in probs]
        splits[name] = wrappers[name][0].step_plan.index.n_split
        stages[name] = wrappers[name][0].step_plan.index.num_stages
        grids[name] = wrappers[name][0].step_plan.grid_tiles
    _apply({})

    def steps(ws, with_gap):
        def fn():
            for w, p in zip(ws, probs):
                _step(w, p)
                if with_gap:  # a non-PDL kernel between layers, as in a model (o_proj, MoE, ...)
                    gap.add_(1.0)
        return fn

    times, outs, lead_times = {}, {}, {}
    order = list(variants.items())
    for r in range(ROUNDS):  # each round starts one variant later: none always follows the same one
        for name, knobs in order[r % len(order):] + order[:r % len(order)]:
            _apply(knobs)
            fn = steps(wrappers[name], knobs.get("gap", False))
            fn()
            torch.cuda.synchronize()
            outs[name] = _step(wrappers[name][0], probs[0]).clone()
            times.setdefault(name, []).append(hb.bench_graph_ms(fn) / copies)
            if lead:
                lead_times.setdefault(name, []).append(tbk.graph_lead_ms(fn, 12, 8) / copies)  # the suite's event column
    _apply({})
    first = next(iter(outs.values()))
    rec = dict(batch=batch, ctx=ctx, q_len=q_len, fp8=fp8, copies=copies, page_table_width=width or ctx // 128,
               n_split=splits, num_stages=stages, grid_tiles=grids, bitwise_equal=all(torch.equal(first, o) for o in outs.values()),
               us={k: statistics.median(v) * 1e3 for k, v in times.items()}, rounds_ms=times)
    if lead:
        rec.update(us_lead={k: statistics.median(v) * 1e3 for k, v in lead_times.items()}, rounds_ms_lead=lead_times)
    dr.log("ab", {k: v for k, v in rec.items() if not k.startswith("rounds_ms")})
    return rec


def _step(w, p):
    k8 = getattr(p, "k8", None)
    if k8 is None:
        return dr._run(w, p.args)
    a = p.args
    return w.run(a["q"], a["k_cache"], a["v_cache"], a["q_idx"], k8[0], k_idx_scale=k8[1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("study", choices=sorted(STUDIES))
    ap.add_argument("--wide", action="store_true", help="page tables 8192 blocks wide (SGLang's, 1M context)")
    ap.add_argument("--batch1", action="store_true", help="only the batch-1 points (the split heuristics' case)")
    ap.add_argument("--fp8", action="store_true", help="8-bit index keys")
    ap.add_argument("--lead", action="store_true", help="also time each step behind the suite's matmul lead")
    ap.add_argument("--points", help="BxCTX[xQ],... instead of the default points (e.g. 2x131072,1x131072x8)")
    a = ap.parse_args()
    variants = STUDIES[a.study]
    width = 8192 if a.wide else None
    gpu_run.env_info()
    res = {"env": gpu_run.RESULTS["env"], "study": a.study, "wide": a.wide, "fp8": a.fp8, "variants": variants,
           "points": []}
    points = [(b, c, 1) for b, c in POINTS if b == 1 or not a.batch1] + [(1, 131072, 8)]
    if a.points:
        points = [tuple(int(v) for v in (p.split("x") + ["1"])[:3]) for p in a.points.split(",")]  # B x CTX [x Q]
    try:
        for b, c, q in points:
            res["points"].append(point(variants, b, c, q_len=q, width=width, fp8=a.fp8, lead=a.lead))
            gpu_run.free()
    finally:
        name = (f"decode_ab_{a.study}{'_wide' if a.wide else ''}{'_b1' if a.batch1 else ''}{'_pts' if a.points else ''}"
                f"{'_fp8' if a.fp8 else ''}{'_lead' if a.lead else ''}.json")
        (Path(os.environ.get("OUT", ".")) / name).write_text(json.dumps(res, indent=1, default=str))
        print(f"card {res['env'].get('card')} torch {res['env'].get('torch')} triton {res['env'].get('triton')}")
        names = list(variants)
        print(f"{a.study}: step us (median of rounds); n_split per variant in the JSON")
        print("batch      ctx q | " + " ".join(f"{n:>13}" for n in names) + " | bitwise")
        for r in res["points"]:
            print(f"{r['batch']:>5} {r['ctx']:>8} {r['q_len']} | " + " ".join(f"{r['us'][n]:13.1f}" for n in names)
                  + f" | {r['bitwise_equal']}")
            if "us_lead" in r:
                print(f"{'behind the lead':>16} | " + " ".join(f"{r['us_lead'][n]:13.1f}" for n in names))


if __name__ == "__main__":
    main()
