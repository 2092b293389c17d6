"""The decode / verify CUDA-graph hooks of SGLang 0.5.23's AttentionBackend, driven the way the
attention test kit's CUDA-graph runner drives them (``_init_cuda_graph_capture_metadata`` then
``_init_cuda_graph_replay_metadata``): on the CPU this is the metadata path and the forwards,
without a real graph. What a captured graph relies on is asserted directly: the metadata msa_sgl
reads lives in buffers allocated by ``init_cuda_graph_state`` (same addresses at capture and at
replay) and ``init_forward_metadata_in_graph`` refreshes them with device ops only."""

import pytest
import torch

from tests.sglang.conftest import import_kit

K = import_kit()

from sglang.srt.model_executor.forward_batch_info import ForwardMode  # noqa: E402
from sglang.test.kits.attention_unittest.runner_modes.cuda_graph_decode_runner import (  # noqa: E402
    _init_cuda_graph_capture_metadata,
    _init_cuda_graph_replay_metadata,
)

SHAPE = K.M3Tiny()
DATA = K.TokenData(SHAPE, seed=11)
CAPTURE_BS = 4
LAYER = 3


def _padding_req(q_per, ndt):
    """A padded graph row: request row 0 (SGLang's padding row, all slot 0), seq_len 1."""
    n = 1 + (q_per if ndt else 0)
    return K.Req(tokens=[0] * n, row=0, slots=[0] * n)


def _batch(runner, mode, reqs, q_per):
    new = [q_per] * len(reqs)
    committed = [len(r.slots) - q_per for r in reqs] if mode == ForwardMode.TARGET_VERIFY else None
    return K.forward_batch(runner, mode, reqs, new, [r.slots[len(r.slots) - q_per:] for r in reqs],
                           seq_lens_override=committed), new


def _meta_ptrs(m):
    return (m.page_table.data_ptr(), m.seq_lens_k.data_ptr(), m.cu_seqlens_q.data_ptr())


@pytest.mark.parametrize("mode", [ForwardMode.DECODE, ForwardMode.TARGET_VERIFY], ids=["decode", "target_verify"])
def test_graph_replay_metadata_matches_eager(msa_on, mode):
    q_per = 3 if mode == ForwardMode.TARGET_VERIFY else 1
    ndt = q_per if mode == ForwardMode.TARGET_VERIFY else 0
    layer = K.make_layers(SHAPE)[LAYER]

    # eager reference run: 3 requests, no graph state
    runner = K.M3MockModelRunner(SHAPE, num_draft_tokens=ndt)
    try:
        eager = K.build_backend(runner)
        reqs = [K.Req(tokens=[(7 * i + j) % SHAPE.vocab for i in range(n)], row=j + 1)
                for j, n in enumerate((70, 37, 18))]
        K.place(runner, reqs, "interleaved_pages", seed=2)
        K.write_prefix(runner, DATA, SHAPE.sparse_layers, reqs, [len(r.tokens) - q_per for r in reqs])
        fb, new = _batch(runner, mode, reqs, q_per)
        eager.init_forward_metadata(fb)
        _, eager_out = K.run_layer(eager, layer, fb, K.layer_inputs(DATA, LAYER, reqs, new))
        assert eager.sparse._msa_cg is None
    finally:
        runner.close()

    # graph runner: capture at bs 4 with the fill length, then replay 3 real rows + 1 padded row
    runner = K.M3MockModelRunner(SHAPE, num_draft_tokens=ndt, cuda_graph=True)
    try:
        hybrid = K.build_backend(runner)
        sparse = hybrid.sparse
        fill = sparse.get_cuda_graph_seq_len_fill_value()
        assert fill == 1
        # SGLang captures with seq_lens = fill value and request row 0 (verify: + the drafts)
        n_cap = fill + (q_per if ndt else 0)
        cap_reqs = [K.Req(tokens=[0] * n_cap, row=0, slots=[0] * n_cap) for _ in range(CAPTURE_BS)]
        cap_fb, cap_new = _batch(runner, mode, cap_reqs, q_per)
        _init_cuda_graph_capture_metadata(sparse, CAPTURE_BS, cap_fb)
        cg = sparse._msa_cg
        assert cg["page_table"].shape == (CAPTURE_BS, -(-runner.req_to_token_pool.req_to_token.shape[1] // SHAPE.block))
        captured = sparse._msa_step
        assert captured.page_table.data_ptr() == cg["page_table"].data_ptr()
        K.run_layer(hybrid, layer, cap_fb, K.layer_inputs(DATA, LAYER, cap_reqs, cap_new))  # capture-time forward

        reqs = [K.Req(tokens=[(7 * i + j) % SHAPE.vocab for i in range(n)], row=j + 1)
                for j, n in enumerate((70, 37, 18))]
        K.place(runner, reqs, "interleaved_pages", seed=2)
        K.write_prefix(runner, DATA, SHAPE.sparse_layers, reqs, [len(r.tokens) - q_per for r in reqs])
        pad = _padding_req(q_per, ndt)
        replay_fb, replay_new = _batch(runner, mode, reqs + [pad], q_per)
        _init_cuda_graph_replay_metadata(sparse, CAPTURE_BS, replay_fb)
        step = sparse._msa_step
        # what the captured kernels read: the same buffers, refreshed in place
        assert _meta_ptrs(step) == _meta_ptrs(captured)
        lens = [len(r.slots) for r in reqs] + [1 + (q_per if ndt else 0)]
        assert step.seq_lens_k.tolist() == lens
        assert step.cu_seqlens_q.tolist() == [q_per * i for i in range(CAPTURE_BS + 1)]
        B = SHAPE.block
        for b, r in enumerate(reqs):
            want = [r.slots[i * B] // B for i in range(-(-len(r.slots) // B))]
            assert step.page_table[b, : len(want)].tolist() == want
        assert step.page_table[3, 0].item() == 0  # the padded row reads the padding page
        inputs = K.layer_inputs(DATA, LAYER, reqs, replay_new[:3])
        pad_inputs = K.layer_inputs(DATA, LAYER, [pad], [q_per])
        both = {k: (None if v is None else torch.cat([v, pad_inputs[k]])) for k, v in inputs.items()}
        _, replay_out = K.run_layer(hybrid, layer, replay_fb, both)
    finally:
        runner.close()
    n_real = 3 * q_per
    torch.testing.assert_close(replay_out[:n_real], eager_out, rtol=0, atol=0)
    K.check_against_reference(replay_out[:n_real], DATA, LAYER, reqs, replay_new[:3])
    assert sparse.msa_sgl_stats == {f"msa_{'verify' if ndt else 'decode'}": 2}


def test_batch_over_graph_size_gets_its_own_metadata(msa_on):
    """An eager decode batch larger than the captured sizes does not write past the buffers."""
    runner = K.M3MockModelRunner(SHAPE, cuda_graph=True)
    try:
        sparse = K.build_backend(runner).sparse
        sparse.init_cuda_graph_state(max_bs=2, max_num_tokens=2)
        reqs = [K.Req(tokens=list(range(10 + j)), row=j + 1) for j in range(3)]
        K.place(runner, reqs, "shuffled_pages")
        fb, _ = _batch(runner, ForwardMode.DECODE, reqs, 1)
        sparse.init_forward_metadata(fb)
        step = sparse._msa_step
    finally:
        runner.close()
    assert step.page_table.data_ptr() != sparse._msa_cg["page_table"].data_ptr()
    assert step.seq_lens_k.tolist() == [10, 11, 12] and step.cu_seqlens_q.tolist() == [0, 1, 2, 3]


@pytest.mark.skipif(not K.ON_GPU, reason="a real CUDA graph needs a GPU")
@pytest.mark.parametrize("mode", [ForwardMode.DECODE, ForwardMode.TARGET_VERIFY], ids=["decode", "target_verify"])
def test_real_cuda_graph_replay(msa_on, monkeypatch, mode):
    """GPU: the in-graph metadata step and the layer captured in one torch.cuda.CUDAGraph (what
    SGLang's decode graph runner records), replayed after the static inputs are overwritten with
    another batch: same output as an eager run of that batch."""
    from msa_sgl import radix_integration as ri

    monkeypatch.delenv(ri.ENV_VALIDATE)  # validation reads device values: not capturable
    q_per = 3 if mode == ForwardMode.TARGET_VERIFY else 1
    ndt = q_per if mode == ForwardMode.TARGET_VERIFY else 0
    layer = K.make_layers(SHAPE)[LAYER]
    runner = K.M3MockModelRunner(SHAPE, num_draft_tokens=ndt, cuda_graph=True)
    try:
        sparse = K.build_backend(runner).sparse
        sparse.init_cuda_graph_state(max_bs=CAPTURE_BS, max_num_tokens=CAPTURE_BS * q_per)
        n_cap = 1 + (q_per if ndt else 0)
        cap_reqs = [K.Req(tokens=[0] * n_cap, row=0, slots=[0] * n_cap) for _ in range(CAPTURE_BS)]
        static_fb, cap_new = _batch(runner, mode, cap_reqs, q_per)
        static_in = K.layer_inputs(DATA, LAYER, cap_reqs, cap_new)

        def step():
            sparse.init_forward_metadata_in_graph(static_fb)
            return sparse.forward(static_in["q"], static_in["k"], static_in["v"], layer, static_fb,
                                  idx_q=static_in["idx_q"], idx_k=static_in["idx_k"], idx_v=None)[1]

        sparse.init_forward_metadata_out_graph(static_fb, in_capture=True)
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            step()  # warm-up (Triton compiles outside the capture)
        torch.cuda.current_stream().wait_stream(s)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = step()

        # a real batch of 4 requests: overwrite the static inputs in place, replay
        reqs = [K.Req(tokens=[(7 * i + j) % SHAPE.vocab for i in range(n)], row=j + 1)
                for j, n in enumerate((70, 37, 18, 129))]
        K.place(runner, reqs, "interleaved_pages", seed=2)
        K.write_prefix(runner, DATA, SHAPE.sparse_layers, reqs, [len(r.tokens) - q_per for r in reqs])
        fb, new = _batch(runner, mode, reqs, q_per)
        for name in ("req_pool_indices", "seq_lens", "out_cache_loc"):
            getattr(static_fb, name).copy_(getattr(fb, name))
        inputs = K.layer_inputs(DATA, LAYER, reqs, new)
        for name in ("q", "k", "v", "idx_q", "idx_k"):
            static_in[name].copy_(inputs[name])
        sparse.init_forward_metadata_out_graph(static_fb)
        graph.replay()
        torch.cuda.synchronize()
        replayed = static_out.clone()

        sparse.init_forward_metadata(fb)  # eager, same batch
        _, eager = K.run_layer(sparse, layer, fb, inputs)
    finally:
        runner.close()
    torch.testing.assert_close(replayed, eager, rtol=0, atol=0)
    K.check_against_reference(replayed, DATA, LAYER, reqs, new)
