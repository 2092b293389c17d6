"""The float64 reference on small cases worked out by hand."""

import math

import pytest
import torch

from msa_sgl import MSAConfig, reference


def one_request(k_idx_values, q_len, block_size, q_idx_value=1.0):
    """d_idx = 1, index scale 1: block score = max of the visible k_idx values."""
    L = len(k_idx_values)
    n_blocks = (L + block_size - 1) // block_size
    k_idx = torch.full((n_blocks, block_size, 1), float("nan"), dtype=torch.float64)
    k_idx.view(-1)[:L] = torch.tensor(k_idx_values, dtype=torch.float64)
    return dict(
        q_idx=torch.full((q_len, 1, 1), q_idx_value, dtype=torch.float64).float(),
        k_idx_cache=k_idx.float(),
        page_table=torch.arange(n_blocks, dtype=torch.int32)[None],
        cu_seqlens_q=torch.tensor([0, q_len], dtype=torch.int32),
        seq_lens_k=torch.tensor([L], dtype=torch.int32),
    )


def test_hand_selection_best_other_block():
    # B=16, three blocks whose keys take pairs of values [1,5] [3,2] [0,0] (each value 8 times);
    # one query at the last position (p=2), k=2, n_local=1: local block 2 forced, then the best
    # of M[0]=5 and M[1]=3 -> block 0.
    cfg = MSAConfig(block_size=16, topk=2, index_scale=1.0)
    vals = [v for v in [1, 5, 3, 2, 0, 0] for _ in range(8)]
    args = one_request(vals, q_len=1, block_size=16)
    assert reference.index_topk(**args, config=cfg).tolist() == [[[0, 2]]]
    scores = reference.index_scores(**args, config=cfg)
    assert scores[0, 0].tolist() == [5.0, 3.0, 0.0]


def test_hand_selection_ties_go_to_lower_block():
    # blocks (B=16) with maxima 4, 4, 0, 9: query in block 3, k=2 -> local 3 + block 0 (tie 0/1)
    vals = [4] * 16 + [1] * 15 + [4] + [0] * 16 + [9] * 16
    args = one_request(vals, q_len=1, block_size=16)
    assert reference.index_topk(**args, config=MSAConfig(block_size=16, topk=2, index_scale=1.0)).tolist() == [[[0, 3]]]
    # with one init block forced and k=3, the free slot takes block 1 (4 > 0)
    cfg = MSAConfig(block_size=16, topk=3, num_init_blocks=1, index_scale=1.0)
    assert reference.index_topk(**args, config=cfg).tolist() == [[[0, 1, 3]]]


def test_hand_selection_invisible_keys_and_short_prefix():
    # 40 keys, B=16: blocks 0, 1, 2 (8 keys). Queries are the last 3 (pos 37, 38, 39).
    # Block 2's key 39 is huge but only the last query sees it; block 2 is forced anyway.
    vals = [1.0] * 16 + [2.0] * 16 + [0.0] * 7 + [100.0]
    args = one_request(vals, q_len=3, block_size=16)
    scores = reference.index_scores(**args, config=MSAConfig(block_size=16, topk=2, index_scale=1.0))
    assert scores[:, 0, 2].tolist() == [0.0, 0.0, 100.0]
    sel = reference.index_topk(**args, config=MSAConfig(block_size=16, topk=2, index_scale=1.0))
    assert sel[:, 0].tolist() == [[1, 2]] * 3
    # n = p + 1 = 3 <= k = 4: every block, padded with -1
    sel = reference.index_topk(**args, config=MSAConfig(block_size=16, topk=4, index_scale=1.0))
    assert sel[:, 0].tolist() == [[0, 1, 2, -1]] * 3


def test_hand_selection_two_local_blocks_and_scale_sign():
    # negative q_idx flips the ranking: the lowest key maximum wins
    vals = [3] * 16 + [-1] * 16 + [2] * 16 + [5] * 16 + [0] * 16
    args = one_request(vals, q_len=1, block_size=16, q_idx_value=-1.0)
    cfg = MSAConfig(block_size=16, topk=3, num_local_blocks=2, index_scale=0.5)
    # p = 4, forced local 3, 4; others 0, 1, 2 score -0.5 * min -> -1.5, 0.5, -1.0 -> block 1
    assert reference.index_topk(**args, config=cfg).tolist() == [[[1, 3, 4]]]
    assert reference.index_scores(**args, config=cfg)[0, 0].tolist() == [-1.5, 0.5, -1.0, -2.5, -0.0]


def test_hand_attention_two_keys():
    # one query head, D=1, B=16, 2 keys: q=1, k=[0, ln 3], v=[1, 5], scale 1:
    # weights 1:3 -> out = (1 + 15) / 4 = 4, lse = ln(1 + 3) = ln 4
    k = torch.zeros(1, 16, 1, 1, dtype=torch.float64)
    v = torch.zeros(1, 16, 1, 1, dtype=torch.float64)
    k[0, :2, 0, 0] = torch.tensor([0.0, math.log(3.0)])
    v[0, :2, 0, 0] = torch.tensor([1.0, 5.0])
    q = torch.ones(1, 1, 1, dtype=torch.float64)
    meta = dict(
        page_table=torch.zeros(1, 1, dtype=torch.int32),
        cu_seqlens_q=torch.tensor([0, 1], dtype=torch.int32),
        seq_lens_k=torch.tensor([2], dtype=torch.int32),
    )
    cfg = MSAConfig(block_size=16, topk=1, softmax_scale=1.0)
    topk = torch.zeros(1, 1, 1, dtype=torch.int32)
    out, lse = reference.sparse_attention(q.float(), k.float(), v.float(), topk, **meta, config=cfg, return_lse=True)
    assert out.item() == pytest.approx(4.0, rel=1e-6)
    assert lse.item() == pytest.approx(math.log(4.0), rel=1e-6)
    # an empty selection attends nothing: out 0, lse -inf
    empty = torch.full((1, 1, 1), -1, dtype=torch.int32)
    out, lse = reference.sparse_attention(q.float(), k.float(), v.float(), empty, **meta, config=cfg, return_lse=True)
    assert out.item() == 0.0 and math.isinf(lse.item()) and lse.item() < 0


def test_hand_attention_duplicate_slot_counts_twice():
    # the same block in two slots: its keys weigh double (one partial result per slot)
    k = torch.zeros(1, 16, 1, 1)
    v = torch.zeros(1, 16, 1, 1)
    v[0, 0, 0, 0] = 2.0  # one key, value 2
    q = torch.ones(1, 1, 1)
    meta = dict(
        page_table=torch.zeros(1, 1, dtype=torch.int32),
        cu_seqlens_q=torch.tensor([0, 1], dtype=torch.int32),
        seq_lens_k=torch.tensor([1], dtype=torch.int32),
    )
    cfg = MSAConfig(block_size=16, topk=2, softmax_scale=1.0)
    out, lse = reference.sparse_attention(
        q, k, v, torch.tensor([[[0, 0]]], dtype=torch.int32), **meta, config=cfg, return_lse=True
    )
    assert out.item() == pytest.approx(2.0) and lse.item() == pytest.approx(math.log(2.0))


def test_reference_against_dense_on_fixed_problem():
    """A fixed multi-request problem with topk >= blocks: the two independent references agree."""
    from harness.problems import Problem, ProblemSpec

    spec = ProblemSpec(q_lens=(37, 1, 0, 20), seq_lens=(37, 90, 5, 64), block_size=16, topk=8,
                       num_kv_heads=2, group_size=4, head_dim=16, index_dim=16, dtype="float32")
    problem = Problem.from_spec(spec)
    a = problem.msa_args()
    out, lse = reference.msa_attention(**a, return_lse=True)
    dense, dense_lse = reference.dense_attention(
        a["q"], a["k_cache"], a["v_cache"], a["page_table"], a["cu_seqlens_q"], a["seq_lens_k"], return_lse=True
    )
    torch.testing.assert_close(out, dense, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(lse, dense_lse, rtol=1e-12, atol=1e-12)


def test_row_chunking_is_invisible(monkeypatch):
    """The reference slices query rows to bound memory; the slicing changes nothing beyond
    float64 rounding (BLAS blocks a 7-row product differently from a 45-row one)."""
    from harness.problems import Problem, ProblemSpec

    spec = ProblemSpec(q_lens=(45, 3), seq_lens=(90, 50), block_size=16, topk=3, num_init_blocks=1,
                       num_kv_heads=2, group_size=2, head_dim=16, index_dim=16)
    a = Problem.from_spec(spec).msa_args()
    whole = reference.msa_attention(**a, return_lse=True)
    monkeypatch.setattr(reference, "_ROW_CHUNK", 7)
    sliced = reference.msa_attention(**a, return_lse=True)
    torch.testing.assert_close(sliced[0], whole[0], rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(sliced[1], whole[1], rtol=1e-12, atol=1e-13)
