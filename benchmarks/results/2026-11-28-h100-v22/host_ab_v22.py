"""(Run as benchmarks/_scratch/host_ab_v22.py beside old_metadata.py = `git show 33ce528:msa_sgl/ops/metadata.py`.)
Host time A/B in one process (NOTES.md v22): build_block_tiles of 33ce528 (two searchsorted, a
heads kernel, two zero fills, an index cast: eleven ops) against this tree's (one runs kernel,
zeros written by the bounds kernel). GPU kept busy so launches never wait; the tiles compared
field by field and the outputs bitwise."""
import importlib.util, os, sys, time, torch, msa_sgl
from harness import bench as hb
from msa_sgl.ops import main_branch as mb, metadata as md

spec = importlib.util.spec_from_file_location("old_metadata", os.path.join(os.path.dirname(__file__), "old_metadata.py"))
old_md = importlib.util.module_from_spec(spec); sys.modules['old_metadata'] = old_md; spec.loader.exec_module(old_md)
new_bbt = md.build_block_tiles
def set_mode(old):
    mb.build_block_tiles = old_md.build_block_tiles if old else new_bbt

def host(fn, n=15):
    fn(); torch.cuda.synchronize(); out = []
    for _ in range(n):
        torch.cuda.synchronize(); torch.cuda._sleep(100_000_000); t0 = time.perf_counter(); fn(); out.append((time.perf_counter() - t0) * 1e3)
    torch.cuda.synchronize(); out.sort(); return out[n // 2]

for C, P, b in ((4096, 0, 1), (4096, 16384, 1), (16384, 16384, 1), (512, 4096, 16)):
    prob = hb.make_big_problem([C] * b, [P + C] * b, dtype=torch.bfloat16, seed=C + P)
    args = prob.msa_args()
    fn = lambda: msa_sgl.msa_attention(**args)
    topk = msa_sgl.index_topk(**prob.index_args())
    a = prob.attention_args(topk)
    total_q = a["q"].shape[0]; batch, max_pages = a["page_table"].shape
    tr = md.token_requests(a["cu_seqlens_q"], total_q)
    tb = lambda f: f(topk, a["cu_seqlens_q"], a["seq_lens_k"], tr, 0, total_q, batch, max_pages, a["config"].block_size,
                     8, a["page_table"], a["k_cache"].shape[0], 0, 0, None, skip_dense=True)
    t_old, t_new = tb(old_md.build_block_tiles), tb(new_bbt)
    for f in ("sorted_key", "tile_info", "tile_entries"):
        assert torch.equal(getattr(t_old, f), getattr(t_new, f)), f
    assert torch.equal(t_old.order.long(), t_new.order.long()) and t_old.grid == t_new.grid
    set_mode(True); ref = fn()
    res = {True: [], False: []}; bt = {True: [], False: []}
    for r in range(3):
        for old in (True, False):
            set_mode(old)
            assert torch.equal(fn(), ref)
            res[old].append(host(fn))
            bt[old].append(host(lambda: tb(old_md.build_block_tiles if old else new_bbt)))
    set_mode(False)
    gpu = {old: hb.bench_ms(lambda: tb(old_md.build_block_tiles if old else new_bbt), rep=50) for old in (True, False)}
    print(f"C={C} P={P} batch={b}: msa_attention host ms, 3 rounds, before {[round(x, 3) for x in sorted(res[True])]} "
          f"v22 {[round(x, 3) for x in sorted(res[False])]}; build_block_tiles alone host ms before "
          f"{[round(x, 3) for x in sorted(bt[True])]} v22 {[round(x, 3) for x in sorted(bt[False])]}, its GPU time "
          f"back-to-back {gpu[True]:.3f} / {gpu[False]:.3f} ms; tiles and outputs equal", flush=True)
    del prob, args, a, topk, t_old, t_new; torch.cuda.empty_cache()
