"""MSADecodeWrapper.run() captured in a CUDA graph, replayed after plan() with new lengths, page
tables and cache contents: the same results as eager calls (GPU only)."""

import pytest
import torch

from harness.problems import Problem, ProblemSpec
from harness.tolerance import compare_topk, output_error
from msa_sgl import MSADecodeWrapper, msa_attention, reference
from msa_sgl.ops.metadata import pdl_enabled

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")

TENSORS = ("q", "k_cache", "v_cache", "q_idx", "k_idx_cache")


def _problems(q_len, dtype):
    """Three steps of one batch of 3 requests: same batch and query count, new lengths and layouts."""
    steps = [(700, 1500, 64), (2100, 90, 900), (33, 1999, 2048)]
    return [
        Problem.from_spec(ProblemSpec(
            q_lens=(q_len,) * 3, seq_lens=tuple(max(s, q_len) for s in seqs), block_size=64, topk=6,
            num_init_blocks=1, num_local_blocks=2, num_kv_heads=2, group_size=8, head_dim=64, index_dim=64,
            dtype=dtype, seed=10 + i, layout_seed=20 + i, extra_pages=3, extra_cols=0, poison="nan"))
        for i, seqs in enumerate(steps)
    ]


@pytest.mark.parametrize("pdl", [True, False], ids=["pdl", "no_pdl"])
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("q_len", [1, 4])
def test_graph_replay_with_new_lengths_and_page_tables(q_len, dtype, pdl):
    if pdl and not pdl_enabled(torch.device("cuda")):
        pytest.skip("programmatic dependent launch needs sm_90+, Triton >= 3.4 and MSA_SGL_PDL unset")
    probs = _problems(q_len, dtype)
    args = [{k: (v.cuda() if isinstance(v, torch.Tensor) else v) for k, v in p.msa_args().items()} for p in probs]
    width = max(a["page_table"].shape[1] for a in args)
    # the graph reads fixed buffers: the "pool" (caches) and the step's q / q_idx, refilled per step
    static = {k: torch.full((max(a[k].shape[0] for a in args),) + tuple(args[0][k].shape[1:]), float("nan"),
                            dtype=args[0][k].dtype, device="cuda") for k in TENSORS}

    def load(a):
        for k in TENSORS:
            static[k][: a[k].shape[0]].copy_(a[k])
        return {k: static[k][: a[k].shape[0]] if k in ("q", "q_idx") else static[k] for k in TENSORS}

    s = probs[0].spec
    w = MSADecodeWrapper(probs[0].config, num_q_heads=s.num_q_heads, num_kv_heads=s.num_kv_heads, head_dim=s.head_dim,
                         index_dim=s.index_dim, max_batch=3, max_pages=width, max_q_len=q_len,
                         dtype=args[0]["q"].dtype, device="cuda", pdl=pdl)
    assert w.pdl == pdl
    total_q = 3 * q_len
    views = load(args[0])
    w.plan(args[0]["page_table"], args[0]["cu_seqlens_q"], args[0]["seq_lens_k"], total_q=total_q)
    out_static = w.run(**views)  # warm-up: compiles the kernels outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        # two layers back to back: with PDL each run's first kernel starts while the previous
        # run's last one finishes, and must still see (and not overwrite) what it reads
        w.run(**views)
        out_static = w.run(**views)
    for p, a in zip(probs, args):
        load(a)
        w.plan(a["page_table"], a["cu_seqlens_q"], a["seq_lens_k"], total_q=total_q)
        graph.replay()
        torch.cuda.synchronize()
        got_out, got_topk = out_static.clone(), w.topk_idx.clone()
        # eager run of the same wrapper: bitwise the same (same kernels, same launch shapes)
        eager = w.run(**views)
        assert torch.equal(w.topk_idx, got_topk), "graph replay selection != eager selection"
        assert torch.equal(eager, got_out), "graph replay output != eager output"
        # and the plain API on the step's own tensors selects the same blocks
        ref_api = msa_attention(**a)
        plain_topk = reference.index_topk(**p.index_args())
        compare_topk(got_topk.cpu(), plain_topk, reference.index_scores(**p.index_args()), p.args()["q_idx"],
                     p.args()["k_idx_cache"], p.config)
        ref_out = reference.sparse_attention(**p.attention_args(got_topk.cpu()))
        output_error(got_out.cpu(), ref_out, got_out.dtype)
        output_error(ref_api.cpu(), ref_out, got_out.dtype, what="msa_attention")
