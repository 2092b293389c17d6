"""Host time A/B in one process: the state before v21 (the index branch's tile map by five torch
ops, each branch's row requests by repeat_interleave) against v21 (metadata.call_rows: one
launch for both, built once). GPU kept busy so launches never wait; outputs compared bitwise."""
import time, torch, msa_sgl
import msa_sgl.ops as ops_pkg
from harness import bench as hb
from msa_sgl.ops import index_branch as ib, main_branch as mb, metadata as md

def old_tr(cu, total_q):
    batch = cu.shape[0] - 1
    q_lens = (cu[1:] - cu[:-1]).to(torch.int64)
    ids = torch.arange(batch, dtype=torch.int32, device=cu.device)
    return torch.repeat_interleave(ids, q_lens, output_size=total_q)
def old_call_rows(cu, total_q, block_t):
    return md.build_tile_map(cu, total_q, block_t), old_tr(cu, total_q)
new_call_rows, new_sparse, new_tr = ib.call_rows, ops_pkg.sparse_attention, mb.token_requests
def old_sparse(*a, **k):
    k.pop("token_req", None)
    return new_sparse(*a, **k)
def set_mode(old):
    ib.call_rows = old_call_rows if old else new_call_rows
    mb.token_requests = old_tr if old else new_tr
    ops_pkg.sparse_attention = old_sparse if old else new_sparse

def host(fn, n=15):
    fn(); torch.cuda.synchronize(); out = []
    for _ in range(n):
        torch.cuda.synchronize(); torch.cuda._sleep(100_000_000); t0 = time.perf_counter(); fn(); out.append((time.perf_counter() - t0) * 1e3)
    torch.cuda.synchronize(); out.sort(); return out[n // 2]

for C, P, b in ((4096, 0, 1), (16384, 16384, 1), (1, 131072, 8), (512, 4096, 16)):
    prob = hb.make_big_problem([C] * b, [P + C] * b, dtype=torch.bfloat16, seed=C + P)
    fn = lambda: msa_sgl.msa_attention(**prob.msa_args())
    set_mode(True); ref = fn()
    res = {True: [], False: []}
    for r in range(3):
        for old in (True, False):
            set_mode(old)
            assert torch.equal(fn(), ref)
            res[old].append(host(fn))
    gpu = hb.bench_ms(fn, rep=50)
    print(f"C={C} P={P} batch={b}: msa_attention host ms, 3 rounds, before {[round(x, 3) for x in sorted(res[True])]} "
          f"v21 {[round(x, 3) for x in sorted(res[False])]}; back-to-back {gpu:.3f} ms (v21); outputs bitwise equal", flush=True)
    del prob; torch.cuda.empty_cache()
