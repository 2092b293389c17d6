"""Where the Gluon KV-outer partial kernel's time goes, per partition and tile, from inside it.

    PYTHONPATH=$PWD python benchmarks/ws_timeline.py      # H100 / H200, Triton 3.6; writes $OUT/ws_timeline.json

Rebuilds ops/kv_outer_ws.py's kernel from its own source with a %clock64 stamp after marked
statements (PLAN: after a barrier wait, the stamp follows it; after an MMA wait, the product is
in registers), in every partition: consumers 0 and 1 and the producer each write [tile, mark]
stamps of their program. Runs the partial kernel of a 16K-token chunk after 0 and 112K cached
tokens at M3 shapes (as prefill_ab.py does): its time with and without stamps (do_bench
medians), and per partition the median and the share of the program's time of every interval
between consecutive marks (the last mark of a tile to the first of the next: "next"). Cycles of
the SM clock; stamps of the first pass only. (NOTES.md v26b-d ran it on v25's kernel too, whose
marks were top / ready / S / softmax_V / PV / O_smem / stored and free / issued.)
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import re
import tempfile
import textwrap
from pathlib import Path

import torch

from harness import bench as hb
from msa_sgl import ops
from msa_sgl.ops import kv_outer_ws as ws
from profile_timeline import insert_marks  # (benchmarks/ is the script's folder: on sys.path)

MAXT = 2048  # tiles a program stamps (a 16K chunk's pass: ~60K tiles over 132 programs)
NM = 10  # marks a tile, at most

# kernel -> (kernel function, {partition function: (role, [(mark, anchor regex, after or before)])})
PLAN = {
    "gluon": ("_kv_outer_ws_kernel", {
        "_ws_consumer": ("WG", [
            ("top", r"^\s*s = i % STAGES", "before"),
            ("QK_ready", r"mbarrier\.wait\(qk_ready\.index\(s1\)", "after"),
            ("V_ready", r"mbarrier\.wait\(vready\.index\(s\), ph\)", "after"),
            ("S", r"b_s = warpgroup_mma_wait\(num_outstanding=1", "after"),
            ("softmax", r"gl\.store\(LSE_PART \+ \(e1", "before"),
            ("PV", r"b_o, p_a = warpgroup_mma_wait\(", "after"),
            ("drained", r"_warps_barrier\(\)", "after"),
            ("stored", r"^\s*i \+= 1", "before"),
        ]),
        "_ws_producer": ("2", [
            ("top", r"^\s*s = i % STAGES", "before"),
            ("next_QK_issued", r"^\s*info = TILE_INFO", "before"),
            ("v_free", r"mbarrier\.wait\(v_empty\.index\(s\), ph \^ 1\)", "after"),
            ("issued", r"mbarrier\.arrive\(vready\.index\(s\), count=1\)", "after"),
        ]),
    }),
}

_HELPER = f'''
@gluon.jit
def _gl_stamp(STAMP, ROLE: gl.constexpr, K: gl.constexpr, i):
    """Mark K of tile i of this program's partition ROLE (0, 1: consumers, 2: producer)."""
    c = gl.inline_asm_elementwise("mov.u64 $0, %clock64;", "=l", [], dtype=gl.int64, is_pure=False, pack=1)
    p = STAMP + ((gl.program_id(0).to(gl.int64) * 3 + ROLE) * {MAXT} + i) * {NM} + K
    gl.store(p, c, mask=i < {MAXT})
'''


def _src(fn):
    return textwrap.dedent(inspect.getsource(fn.fn))


def _instrument(name, role, marks):
    lines = _src(getattr(ws, name)).splitlines()
    insert_marks(name, lines, 0, [(anchor, where) for _, anchor, where in marks],
                 lambda k: f"_gl_stamp(STAMP, {role}, {k}, i)")
    return "\n".join(lines)


def build():
    """A module of the instrumented kernels (in a file: Gluon's JIT reads kernel source). Each
    partition and the kernel take STAMP after TILE_INFO; names get a _tl suffix."""
    names = [PLAN[k][0] for k in PLAN] + [p for k in PLAN for p in PLAN[k][1]]
    body = []
    for kname, (kernel, parts) in PLAN.items():
        body.append(_src(getattr(ws, kernel)))
        body += [_instrument(p, role, marks) for p, (role, marks) in parts.items()]
    # STAMP after TILE_INFO in the partitions' and the kernel's signatures and in the partitions'
    # argument tuples (their first lines), not in the calls of helpers, which take no stamps
    part_names = "|".join(n for _, parts in PLAN.values() for n in parts)
    text = "\n".join(re.sub("TILE_INFO, ", "TILE_INFO, STAMP, ", line, count=1)
                     if re.match(rf"\s*(def \w+\(|\(({part_names}), \()", line) else line
                     for line in "\n\n".join(body).splitlines())
    for n in names:
        text = re.sub(rf"\b{n}\b", n + "_tl", text)
    head = ["from msa_sgl.ops import kv_outer_ws as _ws",
            "globals().update({k: v for k, v in vars(_ws).items() if not k.startswith('__')})", _HELPER]
    path = Path(tempfile.mkdtemp()) / "msa_ws_timeline_kernels.py"
    path.write_text("\n\n".join(head) + "\n\n" + text + "\n")
    spec = importlib.util.spec_from_file_location("msa_ws_timeline_kernels", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class _Stamped:
    """Stands in for a kernel: launches the instrumented one, the stamp buffer after TILE_INFO;
    keeps the first launch's stamps (the first pass) while ``record`` is on."""

    def __init__(self, fn):
        self.fn, self.record, self.buf, self.grid = fn, False, None, None

    def __getitem__(self, grid):
        def launch(*args, **kw):
            buf = torch.zeros(grid[0] * 3 * MAXT * NM, dtype=torch.int64, device=args[4].device)
            if self.record and self.buf is None:
                self.buf, self.grid = buf, grid[0]
            return self.fn[grid](*args[:6], buf, *args[6:], **kw)
        return launch


def summarize(buf, nprog, marks_by_role):
    """Per role: median cycles and share of the program time of each interval between marks."""
    st = buf.view(nprog, 3, MAXT, NM).cpu().long()
    out = {}
    for role, marks in marks_by_role.items():
        names = [m[0] for m in marks]
        nm = len(names)
        s = st[:, role, :, :nm]
        ok = (s > 0).all(dim=2)  # tiles stamped in full
        per = {f"{names[k]}->{names[k + 1]}": [] for k in range(nm - 1)}
        per[f"{names[-1]}->next"] = []
        spans = []
        for p in range(nprog):
            n = int(ok[p].sum())
            if n < 2:
                continue
            t = s[p, :n].double()
            spans.append(float(t[-1, nm - 1] - t[0, 0]))
            for k in range(nm - 1):
                per[f"{names[k]}->{names[k + 1]}"].append(t[:, k + 1] - t[:, k])
            per[f"{names[-1]}->next"].append(t[1:, 0] - t[:-1, nm - 1])
        total = sum(float(torch.cat(v).sum()) for v in per.values())
        out[str(role)] = {
            "programs": len(spans), "tiles": int(ok.sum()), "median_program_cycles": float(torch.tensor(spans).median()),
            "intervals": {k: {"median": float(torch.cat(v).median()), "mean": float(torch.cat(v).mean()),
                              "share": float(torch.cat(v).sum()) / total} for k, v in per.items()}}
    return out


def main():
    out_path = Path(os.environ.get("OUT", ".")) / "ws_timeline.json"
    mod = build()
    res = []
    for P in (0, 114688):
        prob = hb.make_big_problem([16384], [P + 16384], dtype=torch.bfloat16, seed=P + 3)
        topk = ops.index_topk(**prob.index_args())
        aa = prob.attention_args(topk)

        def part():
            return ops.sparse_attention(**aa, method="kv_outer", stop_after="partial")

        for name, (kernel, parts) in PLAN.items():
            plain_ms = hb.bench_ms(part, rep=40)
            real = getattr(ws, kernel)
            shim = _Stamped(getattr(mod, kernel + "_tl"))
            setattr(ws, kernel, shim)
            try:
                stamped_ms = hb.bench_ms(part, rep=40)
                shim.record = True
                part()
                torch.cuda.synchronize()
            finally:
                setattr(ws, kernel, real)
            consumer, producer = (marks for _, marks in parts.values())
            marks = {0: consumer, 1: consumer, 2: producer}
            rec = dict(P=P, kernel=name, plain_ms=plain_ms, stamped_ms=stamped_ms, programs=shim.grid,
                       roles=summarize(shim.buf, shim.grid, marks))
            print(json.dumps(rec), flush=True)
            res.append(rec)
    out_path.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
