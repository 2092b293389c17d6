"""Where a batch-1 decode step's time goes after the index scan, from inside the kernels.

    python benchmarks/profile_timeline.py [--points 1x131072,1x1048576] [--fp8]

The step's three kernels (index scan, slot kernel with the list merge, head merge) are rebuilt
from their own source with timestamps added (nothing else changes; the shipped kernels are not
touched): each program reads the GPU's global nanosecond timer (%globaltimer) and its SM's cycle
counter (%clock64) at marked points. A point after a load reads the timer only once the loaded
value is known (a branch on it), so "page" means the page id has arrived, not that its load was
issued. The step runs as in decode_ab.py (graph replays of back-to-back steps with PDL, inputs
rotated past L2); the stamps of the last step of the graph are reported, relative to the moment
the scan's last program finished: per mark, the earliest / median / latest program.

Marks:
  scan   start, waited (PDL wait passed), prologue (query row loaded), end (list stored)
  slot   start, meta (request lengths known), waited, merged (own block id known), page (page id
         known), qk (keys arrived, scores and maxima done), pv (values arrived, output done), end
         (qk / pv / end: the whole-block form only, which batch-1 steps take)
  merge  start, waited, loaded (partials arrived), end
"end" marks are read once the program's last store is issued. A mark no program reached is
listed as such.

Writes $OUT/profile_timeline[_fp8].json and prints the table. Also times the instrumented step
against the shipped one (the stamps' own cost)."""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import math
import os
import re
import statistics
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from msa_sgl.ops import index_branch as ib  # noqa: E402
from msa_sgl.ops import main_branch as mb  # noqa: E402

# (kernel name, module, marks: (name, anchor regex, where, dependency expression or None))
# where: "after" / "before" the first line matching the anchor (searched in order, each after the
# previous mark's line); the dependency is a scalar the timer read waits for.
PLAN = {
    "scan": ("_index_partial_kernel", ib, [
        ("start", r"pdl_wait\(USE_PDL\)", "before", None),
        ("waited", r"pdl_wait\(USE_PDL\)", "after", None),
        ("prologue", r"b_qt = tl\.trans\(b_q\)", "after", "tl.max(b_q.to(tl.float32))"),
        ("end", r"tl\.store\(OUT_KEY \+ off", "after", None),
    ]),
    "slot": ("_slot_partial_kernel", mb, [
        ("start", r"i_s = tl\.program_id\(2\)", "after", None),
        ("meta", r"pos = tl\.load\(SEQ_LENS", "after", "pos"),
        ("waited", r"pdl_wait\(USE_PDL\)", "after", None),
        ("merged", r"blk = tl\.sum\(", "after", "blk"),
        ("page", r"page = tl\.minimum\(tl\.maximum\(page", "after", "page"),
        ("qk", r"b_m = tl\.max\(b_s, axis=1\)", "after", "tl.max(b_m)"),
        ("pv", r"b_o = b_o / b_l", "after", "tl.sum(tl.sum(b_o, axis=1))"),
        ("end", r"tl\.store\(LSE_PART \+ row, b_m \+ tl\.log2\(b_l\)", "after", None),
    ]),
    "merge": ("_merge_heads_kernel", mb, [
        ("start", r"pdl_wait\(USE_PDL\)", "before", None),
        ("waited", r"pdl_wait\(USE_PDL\)", "after", None),
        ("loaded", r"o = tl\.load\(O_PART", "after", "tl.sum(tl.sum(o, axis=1))"),
        ("end", r"tl\.store\(LSE \+ t64", "after", None),
    ]),
}

_HELPER = '''
@triton.jit
def _tl_stamp(STAMPS, K: tl.constexpr, NS: tl.constexpr, dep):
    """Mark K of this program: globaltimer (ns) and clock64, read once ``dep`` is known."""
    pid = (tl.program_id(0) + tl.num_programs(0) * (tl.program_id(1) + tl.num_programs(1) * tl.program_id(2)))
    base = STAMPS + pid.to(tl.int64) * (2 * NS) + 2 * K
    if dep != -1234567:  # a branch on dep: the timer read cannot move above its load
        t = tl.inline_asm_elementwise("mov.u64 $0, %globaltimer;", "=l", [], dtype=tl.int64, is_pure=False, pack=1)
        c = tl.inline_asm_elementwise("mov.u64 $0, %clock64;", "=l", [], dtype=tl.int64, is_pure=False, pack=1)
        tl.store(base, t)
        tl.store(base + 1, c)
'''


def _instrumented_source(name, module, marks):
    src = textwrap.dedent(inspect.getsource(getattr(module, name).fn))
    lines = src.splitlines()
    assert lines[0].startswith("@triton.jit"), name
    # the extra parameter: last in the signature (after the defaulted constexprs)
    close = next(i for i, ln in enumerate(lines) if ln.startswith("):"))
    lines.insert(close, "    STAMPS=None,")
    lines[1] = lines[1].replace(name, name + "_tl")
    insert_marks(name, lines, close + 1, [(anchor, where) for _, anchor, where, _ in marks],
                 lambda k: f"_tl_stamp(STAMPS, {k}, {len(marks)}, {marks[k][3] or 'tl.program_id(0)'})")
    return "\n".join(lines)


def insert_marks(name, lines, at, anchors, call):
    """Into the source ``lines`` of kernel ``name`` (in place), from line ``at`` on, for each
    (anchor regex, "after" or "before") in order, the statement ``call(k)`` after the first
    statement matching anchor k below the previous mark (a statement may continue over lines
    while its parentheses are open), or before it, at the anchor line's indentation."""
    for k, (anchor, where) in enumerate(anchors):
        hits = [i for i in range(at, len(lines)) if re.search(anchor, lines[i])]
        if not hits:
            raise RuntimeError(f"{name}: anchor {anchor!r} not found after line {at}")
        i = hits[0]
        stmt = re.match(r"\s*", lines[i]).group(0) + call(k)
        if where == "after":
            j = i + 1
            depth = lines[i].count("(") - lines[i].count(")")
            while depth > 0:
                depth += lines[j].count("(") - lines[j].count(")")
                j += 1
            lines.insert(j, stmt)
            at = j + 1
        else:
            lines.insert(i, stmt)
            at = i + 1  # the anchor line itself, now one down


def build():
    """A module of the instrumented kernels (in a file: Triton's JIT reads kernel source)."""
    head = ["import triton", "import triton.language as tl",
            "from msa_sgl.ops import index_branch as _ib, main_branch as _mb",
            "globals().update({k: v for m in (_ib, _mb) for k, v in vars(m).items() if not k.startswith('__')})",
            _HELPER]
    body = [_instrumented_source(n, m, marks) for n, m, marks in PLAN.values()]
    path = Path(tempfile.mkdtemp()) / "msa_timeline_kernels.py"
    path.write_text("\n\n".join(head + body) + "\n")
    spec = importlib.util.spec_from_file_location("msa_timeline_kernels", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod, path


class _Stamped:
    """Stands in for a kernel: launches the instrumented one with the current stamp buffer."""

    def __init__(self, fn, key):
        self.fn, self.key = fn, key

    def __getitem__(self, grid):
        def launch(*args, **kw):
            buf = CURRENT.get(self.key)
            n = math.prod(grid) * 2 * len(PLAN[self.key][2])
            if buf is not None:
                assert buf.numel() >= n, (self.key, buf.numel(), n)
            return self.fn[grid](*args, STAMPS=buf if buf is not None else DUMMY[0], **kw)
        return launch


CURRENT: dict = {}
DUMMY: list = []
ORIGINAL = {k: getattr(m, n) for k, (n, m, _) in PLAN.items()}


def install(mod):
    for key, (name, module, _) in PLAN.items():
        setattr(module, name, _Stamped(getattr(mod, name + "_tl"), key))


def uninstall():
    for key, (name, module, _) in PLAN.items():
        setattr(module, name, ORIGINAL[key])


def _summary(stamps, marks, t0):
    """Per mark: (earliest, median, latest) us after t0 over the programs that reached it, and
    the programs' median clock64 cycles since their previous mark."""
    out = {}
    prev = None
    for k, m in enumerate(marks):
        t = stamps[:, k, 0]
        ok = t > 0
        c = stamps[:, k, 1]
        rec = {"n": int(ok.sum())}
        if ok.any():
            v = ((t[ok] - t0).double() / 1e3).tolist()
            rec.update(first=min(v), median=statistics.median(v), last=max(v))
            if prev is not None:
                both = ok & (stamps[:, prev, 0] > 0)
                if both.any():
                    rec["cycles_since_prev"] = statistics.median((c[both] - stamps[both, prev, 1]).tolist())
        out[m] = rec
        prev = k
    return out


def point(batch, ctx, fp8, mod):
    import decode_ab as ab
    import decode_run as dr
    from harness import bench as hb

    _, need = dr.compulsory_bytes(batch, ctx, 1)
    copies = max(2, min(8, math.ceil(200e6 / need)))
    probs = [hb.make_big_problem([1] * batch, [ctx] * batch, dtype=torch.bfloat16, seed=batch + ctx + i)
             for i in range(copies)]
    if fp8:
        for p in probs:
            p.k8 = dr.quantized(p)
    ws = [hb.planned_decode_wrapper(p, 1, pdl=True, index_fp8=fp8) for p in probs]
    sp = ws[0].step_plan
    grids = {"scan": sp.grid_tiles * sp.index.n_split, "slot": sp.total_q * ws[0].hkv * ws[0].config.topk,
             "merge": sp.total_q * ws[0].hq}
    bufs = [{k: torch.zeros(g, len(PLAN[k][2]), 2, dtype=torch.int64, device="cuda") for k, g in grids.items()}
            for _ in probs]

    def plain():
        for w, p in zip(ws, probs):
            ab._step(w, p)

    def stamped():
        for w, p, b in zip(ws, probs, bufs):
            CURRENT.clear()
            CURRENT.update(b)
            ab._step(w, p)

    plain()
    ref = ab._step(ws[-1], probs[-1]).clone()
    t_plain = hb.bench_graph_ms(plain) / copies * 1e3
    install(mod)
    try:
        stamped()
        torch.cuda.synchronize()
        same = torch.equal(ref, ab._step(ws[-1], probs[-1]))
        t_stamped = hb.bench_graph_ms(stamped) / copies * 1e3
        for b in bufs:
            for v in b.values():
                v.zero_()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            stamped()
        g.replay()  # warm
        g.replay()
        torch.cuda.synchronize()
    finally:
        uninstall()
        CURRENT.clear()
    last = {k: v.cpu() for k, v in bufs[-1].items()}
    scan_end = last["scan"][:, 3, 0]
    t0 = int(scan_end[scan_end > 0].max())
    gt = torch.cat([v[:, :, 0].flatten() for v in last.values()])
    gt = gt[gt > 0].sort().values
    d = (gt[1:] - gt[:-1])
    granularity = int(d[d > 0].min()) if (d > 0).any() else 0
    rec = dict(batch=batch, ctx=ctx, fp8=fp8, copies=copies, plan=str(sp.index), fused=sp.fused_select,
               step_us=t_plain, stamped_step_us=t_stamped, outputs_equal=same, timer_granularity_ns=granularity,
               t0="the scan's last program end", kernels={})
    for k, (_, _, marks) in PLAN.items():
        rec["kernels"][k] = _summary(last[k], [m for m, *_ in marks], t0)
    return rec


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", default="1x32768,1x131072,1x1048576")
    ap.add_argument("--fp8", action="store_true")
    ap.add_argument("--source", action="store_true", help="print the instrumented source and exit (no GPU)")
    a = ap.parse_args()
    mod, path = build()
    if a.source:
        print(path.read_text())
        return
    import gpu_run
    gpu_run.env_info()
    DUMMY.append(torch.zeros(1 << 16, dtype=torch.int64, device="cuda"))
    res = {"env": gpu_run.RESULTS["env"], "fp8": a.fp8, "points": []}
    try:
        for pt in a.points.split(","):
            b, c = (int(v) for v in pt.split("x"))
            r = point(b, c, a.fp8, mod)
            res["points"].append(r)
            print(f"\n== {b} x {c} {'8-bit' if a.fp8 else 'bf16'} keys: step {r['step_us']:.1f} us "
                  f"(stamped {r['stamped_step_us']:.1f}; outputs equal {r['outputs_equal']}; timer step "
                  f"{r['timer_granularity_ns']} ns); {r['plan']}")
            print("   us after the scan's last program ended: first / median / last program, "
                  "median cycles since the previous mark")
            for k, marks in r["kernels"].items():
                for m, v in marks.items():
                    if not v["n"]:
                        print(f"   {k:5} {m:9} no program reached this mark")
                    else:
                        cyc = v.get("cycles_since_prev")
                        print(f"   {k:5} {m:9} {v['first']:8.2f} {v['median']:8.2f} {v['last']:8.2f}  n={v['n']:4}"
                              + (f"  {cyc:8.0f} cyc" if cyc is not None else ""))
            gpu_run.free()
    finally:
        out = Path(os.environ.get("OUT", ".")) / f"profile_timeline{'_fp8' if a.fp8 else ''}.json"
        out.write_text(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()
