"""The KV-outer slot merge (main_branch._merge_slots_kernel) by launch variant, on one pass's
partials of a 16K chunk at M3 shapes (two groups a pass, as the 2.25 GiB workspace runs it).

    OUT=dir python benchmarks/merge_ab.py [P ...]      # cached prefixes, default 0 114688

The partial outputs and LSEs are random (the merge's time does not depend on their values), the
selections the chunk's real ones (which slots are valid). Variants: num_warps 4 (shipped) / 2 / 8;
interleaved rounds, lower medians; each variant's output compared bit for bit with the shipped
launch (other warp counts reduce the slot weights' sum in another order: not bitwise equal).
(v28e also ran the partials' loads evict-first, a constexpr since removed: a tie.) Achieved bandwidth counts the
bytes the merge must move: valid partial rows and LSEs read, the pass's output and LSE written.
Writes $OUT/merge_ab.json.
"""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from harness import bench as hb  # noqa: E402
from msa_sgl import ops  # noqa: E402
from msa_sgl.ops import main_branch as mb  # noqa: E402
from msa_sgl.ops.metadata import call_rows  # noqa: E402

VARIANTS = (4, 2, 8)


def point(P, C=16384, ng=2, rounds=3):
    prob = hb.make_big_problem([C], [P + C], dtype=torch.bfloat16, seed=P + 3)
    ia = prob.index_args()
    topk_idx = ops.index_topk(**ia)
    a = prob.args
    cfg = prob.config
    hkv, g, d, topk = 4, 16, 128, cfg.topk
    g0 = torch.Generator(device="cuda").manual_seed(P)
    n = C * ng * topk * g
    o_part = torch.randn(n, d, generator=g0, device="cuda").to(torch.bfloat16)
    lse_part = torch.randn(n, generator=g0, device="cuda") * 4
    _, token_req = call_rows(a["cu_seqlens_q"], C, 1)
    out = torch.empty(C, hkv * g, d, dtype=torch.bfloat16, device="cuda")
    lse = torch.empty(C, hkv * g, dtype=torch.float32, device="cuda")
    # bytes the merge must move: valid slots' partial rows and LSEs, the pass's output rows and LSEs
    pos = (a["seq_lens_k"][0] - C + torch.arange(C, device="cuda")) // cfg.block_size
    sel = topk_idx[:, :ng]
    valid = int(((sel >= 0) & (sel <= pos[:, None, None])).sum())
    nbytes = valid * g * (d * 2 + 4) + C * ng * g * (d * 2 + 4)

    def launch(w):
        mb._merge_slots_kernel[(C, ng)](
            o_part, lse_part, topk_idx, a["seq_lens_k"], a["cu_seqlens_q"], token_req, out, lse, 0, 0,
            topk_idx.stride(0), topk_idx.stride(1), out.stride(0), out.stride(1),
            HKV=hkv, NG=ng, G=g, G_P=g, D=d, D_P=d, BLOCK=cfg.block_size, TOPK=topk, TOPK_P=topk, DENSE=0,
            num_warps=w)

    ref = None
    times, same = {}, {}
    for _ in range(rounds):
        for w in VARIANTS:
            name = f"w{w}"
            out.zero_()
            launch(w)
            o = out[:, : ng * g].clone()
            if ref is None:
                ref = o
            same[name] = same.get(name, True) and bool(torch.equal(o, ref))
            times.setdefault(name, []).append(hb.bench_ms(lambda: launch(w), rep=100))
    ms = {k: sorted(v)[(len(v) - 1) // 2] for k, v in times.items()}
    rec = dict(P=P, C=C, ng=ng, bytes=nbytes, ms=ms, rounds_ms=times, tbps={k: nbytes / v / 1e9 for k, v in ms.items()},
               same=same)
    print({k: (round(v, 4), round(nbytes / v / 1e9, 2)) for k, v in ms.items()}, "P", P, "same", all(same.values()),
          flush=True)
    return rec


def main():
    points = [int(x) for x in sys.argv[1:]] or [0, 114688]
    res = [point(P) for P in points]
    (Path(os.environ.get("OUT", ".")) / "merge_ab.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
