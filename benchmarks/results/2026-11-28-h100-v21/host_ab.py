"""Host time A/B in one process: token_requests by repeat_interleave (old, built by each branch)
against the binary search (new, built once by msa_attention); GPU kept busy so launches never wait."""
import time, torch, msa_sgl
from harness import bench as hb
from msa_sgl import api
from msa_sgl.ops import index_branch as ib, main_branch as mb, metadata as md

def old_tr(cu, total_q):
    batch = cu.shape[0] - 1
    q_lens = (cu[1:] - cu[:-1]).to(torch.int64)
    ids = torch.arange(batch, dtype=torch.int32, device=cu.device)
    return torch.repeat_interleave(ids, q_lens, output_size=total_q)
new_tr = md.token_requests

def host(fn, n=15):
    fn(); torch.cuda.synchronize(); out = []
    for _ in range(n):
        torch.cuda.synchronize(); torch.cuda._sleep(100_000_000); t0 = time.perf_counter(); fn(); out.append((time.perf_counter() - t0) * 1e3)
    torch.cuda.synchronize(); out.sort(); return out[n // 2]

def set_mode(old):
    for m in (md, ib, mb):
        m.token_requests = old_tr if old else new_tr
    # old: msa_attention built it in each branch
    api_tr = (lambda cu, t: None) if old else new_tr
    md_proxy.token_requests = api_tr

class _Proxy:  # what api.msa_attention sees as ops.metadata
    pass
md_proxy = _Proxy()
md_proxy.token_requests = new_tr
import msa_sgl.ops as ops_pkg
real_md = ops_pkg.metadata
ops_pkg.metadata = md_proxy
for C, P, b in ((4096, 0, 1), (16384, 16384, 1), (1, 131072, 8)):
    prob = hb.make_big_problem([C] * b, [P + C] * b, dtype=torch.bfloat16, seed=C + P)
    ref = msa_sgl.msa_attention(**prob.msa_args())
    fn = lambda: msa_sgl.msa_attention(**prob.msa_args())
    res = {True: [], False: []}
    for r in range(3):
        for old in (True, False):
            set_mode(old)
            assert torch.equal(fn(), ref)
            res[old].append(host(fn))
    tq = prob.args["cu_seqlens_q"]
    micro = {}
    for name, f in (("old", old_tr), ("new", new_tr)):
        micro[name] = host(lambda: f(tq, C * b)) 
    print(f"C={C} P={P} batch={b}: msa_attention host ms old {sorted(res[True])} new {sorted(res[False])}; "
          f"token_requests alone old {micro['old']*1e3:.1f} us new {micro['new']*1e3:.1f} us; outputs bitwise equal", flush=True)
    del prob; torch.cuda.empty_cache()
