"""A MiniMax-M3-shaped test bench on SGLang 0.5.23's real objects, on the CPU.

In the style of SGLang's attention unit-test kit (sglang/test/kits/attention_unittest/): a mock
model runner (a ModelRunner whose __init__ is not run, holding SGLang's real ReqToTokenPool,
MiniMaxSparseKVPool and PagedTokenToKVPoolAllocator, with the runtime server args installed the
way the kit does), SGLang's real ``attn_backend_wrapper`` building the MiniMax hybrid backend,
real RadixAttention layers called under a real ForwardContext, real ForwardBatch objects, and
real UnifiedRadixCache for prefix sharing. Nothing SGLang provides is mocked; only the model
(projections) is replaced by per-token data tables, so that equal token prefixes give equal
K/V/index keys, as a causal model would.

msa_sgl runs on the CPU through Triton's interpreter (``TRITON_INTERPRET=1``, set by
tests/conftest.py) with ``MSA_SGL_FORCE=1`` (set by the fixtures): fp16, small shapes. On a
machine with a GPU the same bench runs on CUDA in bf16 (``KIT_DEVICE``).
"""

from __future__ import annotations

import os
from array import array
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import torch

# The kit's module sets a single-rank parallel override when imported (as its own tests do).
from sglang.test.kits.attention_unittest.attention_methods.dense_attention import TinyModelConfig, make_loc_fn
from sglang.srt.layers.attention.attention_registry import ATTENTION_BACKENDS, attn_backend_wrapper
from sglang.srt.layers.radix_attention import RadixAttention
from sglang.srt.mem_cache.allocator.paged import PagedTokenToKVPoolAllocator
from sglang.srt.managers.schedule_batch import Req as SglReq
from sglang.srt.mem_cache.base_prefix_cache import EvictParams, MatchPrefixParams
from sglang.srt.mem_cache.cache_init_params import CacheInitParams
from sglang.srt.mem_cache.memory_pool import MiniMaxSparseKVPool, ReqToTokenPool
from sglang.srt.mem_cache.radix_cache import RadixKey
from sglang.srt.mem_cache.unified_cache.components.base import ComponentType
from sglang.srt.mem_cache.unified_radix_cache import UnifiedRadixCache
from sglang.srt.model_executor.cuda_graph_config import Backend, CudaGraphConfig, PhaseConfig
from sglang.srt.model_executor.forward_batch_info import ForwardBatch, ForwardMode
from sglang.srt.model_executor.forward_context import ForwardContext, forward_context
from sglang.srt.model_executor.model_runner import ModelRunner
from sglang.srt.runtime_context import get_context
from sglang.srt.sampling.sampling_params import SamplingParams
from sglang.srt.speculative.spec_info import SpeculativeAlgorithm
from sglang.test.mem_cache_utils import finish_req

import msa_sgl
from msa_sgl import MSAConfig, reference

# Where the bench runs: the CPU (msa_sgl through Triton's interpreter, fp16: the interpreter
# computes bf16 products wrongly) or, on a GPU machine, CUDA in bf16. MSA_SGL_TEST_DEVICE
# overrides the device.
KIT_DEVICE = os.environ.get("MSA_SGL_TEST_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
KIT_DTYPE = torch.float16 if KIT_DEVICE == "cpu" else torch.bfloat16
ON_GPU = KIT_DEVICE != "cpu"


@dataclass(frozen=True)
class M3Tiny:
    """MiniMax-M3's layout (dense layer, sparse layers, one shared index-key head, one index
    query head per KV group, score 'max', top-k counting the forced local block), small."""

    num_heads: int = 8
    num_kv_heads: int = 2
    head_dim: int = 32
    index_dim: int = 32
    block: int = 16
    page_size: Optional[int] = None  # None: the block size (what M3 runs with)
    topk: int = 4
    init_blocks: int = 0
    local_blocks: int = 1
    score_type: str = "max"
    # layer 0 dense; 1, 2, 3 sparse; layer 2 keeps the index-value path
    freq: tuple = (0, 1, 1, 1)
    disable_value: tuple = (0, 1, 0, 1)
    num_index_heads: Optional[int] = None  # None: num_kv_heads
    context_len: int = 320
    max_reqs: int = 6
    num_pages: int = 48
    dtype: torch.dtype = KIT_DTYPE
    vocab: int = 64

    @property
    def page(self) -> int:
        return self.page_size or self.block

    @property
    def sparse_layers(self) -> List[int]:
        return [i for i, f in enumerate(self.freq) if f]

    @property
    def msa_layers(self) -> List[int]:
        return [i for i in self.sparse_layers if self.disable_value[i]]

    @property
    def config(self) -> MSAConfig:
        return MSAConfig(block_size=self.block, topk=self.topk, num_init_blocks=self.init_blocks,
                         num_local_blocks=self.local_blocks)

    def sparse_cfg(self) -> dict:
        return dict(
            sparse_attention_freq=list(self.freq),
            sparse_disable_index_value=list(self.disable_value),
            sparse_index_dim=self.index_dim,
            sparse_block_size=self.block,
            sparse_topk_blocks=self.topk,
            sparse_init_block=self.init_blocks,
            sparse_local_block=self.local_blocks,
            sparse_num_index_heads=self.num_index_heads or self.num_kv_heads,
            sparse_score_type=self.score_type,
        )


def m3_model_config(shape: M3Tiny) -> TinyModelConfig:
    mc = TinyModelConfig(num_heads=shape.num_heads, num_kv_heads=shape.num_kv_heads, head_dim=shape.head_dim,
                         hidden_size=64, context_len=shape.context_len)
    mc.hf_config.architectures = ["MiniMaxM3SparseForCausalLM"]
    mc.hf_config.sparse_attention_config = shape.sparse_cfg()
    mc.hf_config.num_hidden_layers = len(shape.freq)
    mc.num_hidden_layers = len(shape.freq)
    mc.get_total_num_kv_heads = lambda: shape.num_kv_heads
    return mc


class M3MockModelRunner(ModelRunner):
    """The kit's MockModelRunner pattern (ModelRunner without its __init__), with the MiniMax-M3
    pools: SGLang's ReqToTokenPool, MiniMaxSparseKVPool and paged allocator."""

    def __init__(self, shape: M3Tiny, *, device: str = KIT_DEVICE, num_draft_tokens: int = 0,
                 speculative_algorithm: Optional[str] = None, eagle_topk: int = 0, cuda_graph: bool = False,
                 kv_dtype: Optional[torch.dtype] = None):
        self.shape = shape
        self.device = device
        self.dtype = shape.dtype
        self.kv_cache_dtype = kv_dtype or shape.dtype
        self.kv_cache_dtype_str = "auto"
        self.prefill_attention_backend_str = "torch_native"
        self.decode_attention_backend_str = "torch_native"
        self.draft_attention_backend = None
        self.gpu_id = 0
        self.canary_manager = None
        self.page_size = shape.page
        self.model_config = m3_model_config(shape)
        self.is_draft_worker = False
        self.max_running_requests = shape.max_reqs
        self.model = torch.nn.Module()
        self.spec_algorithm = SpeculativeAlgorithm.from_string(speculative_algorithm)
        self._kernel_warmed_up = True
        self._server_args_override = get_context().override_server_args(
            attention_backend="torch_native",
            chunked_prefill_size=-1,
            cuda_graph_config=CudaGraphConfig(
                decode=PhaseConfig(backend=Backend.FULL if cuda_graph else Backend.DISABLED),
                prefill=PhaseConfig(backend=Backend.DISABLED),
            ),
            disable_radix_cache=False,
            dllm_algorithm=None,
            dllm_algorithm_config=None,
            dp_size=1,
            enable_deterministic_inference=False,
            enable_mis=False,
            is_embedding=False,
            kv_cache_dtype="auto",
            max_running_requests=None,
            page_size=shape.page,
            pp_size=1,
            revision=None,
            speculative_algorithm=speculative_algorithm,
            speculative_eagle_topk=eagle_topk,
            speculative_num_draft_tokens=num_draft_tokens,
            speculative_num_steps=max(0, num_draft_tokens - 1),
            tp_size=1,
            triton_attention_num_kv_splits=8,
            triton_attention_split_tile_size=None,
        )
        self.server_args = self._server_args_override.install()
        self.req_to_token_pool = ReqToTokenPool(size=shape.max_reqs, max_context_len=shape.context_len + 4,
                                                device=device, enable_memory_saver=False)
        self.token_to_kv_pool = MiniMaxSparseKVPool(
            size=shape.num_pages * shape.page, page_size=shape.page, dtype=self.kv_cache_dtype,
            head_num=shape.num_kv_heads, head_dim=shape.head_dim, idx_head_dim=shape.index_dim,
            dense_layer_ids=[i for i, f in enumerate(shape.freq) if not f], sparse_layer_ids=shape.sparse_layers,
            device=device, disable_value_sparse_layer_ids=[i for i in shape.sparse_layers if shape.disable_value[i]],
            start_layer=0, end_layer=len(shape.freq),
        )
        self.token_to_kv_pool_allocator = PagedTokenToKVPoolAllocator(
            size=shape.num_pages * shape.page, page_size=shape.page, dtype=self.kv_cache_dtype, device=device,
            kvcache=self.token_to_kv_pool, need_sort=False,
        )
        self.init_kv_index_translator()
        self.attention_chunk_size = None
        self.hisparse_coordinator = None
        self.init_new_workspace = False
        self.is_hybrid_swa = False
        self.sliding_window_size = None
        self.use_mla_backend = False

    def close(self):
        self._server_args_override.restore()

    # the properties the kit's runner stubs (no linear-attention model here)
    hybrid_gdn_config = property(lambda self: None)
    hybrid_lightning_config = property(lambda self: None)
    kimi_linear_config = property(lambda self: None)
    linear_attn_model_spec = property(lambda self: None)
    mamba2_config = property(lambda self: None)
    mambaish_config = property(lambda self: None)


def build_backend(runner: M3MockModelRunner):
    """SGLang's own construction path for M3: a dense backend, then ``attn_backend_wrapper``
    (which builds whatever class ``minimax_sparse_backend.MiniMaxSparseAttnBackend`` names)."""
    dense = ATTENTION_BACKENDS["torch_native"](runner)
    return attn_backend_wrapper(runner, dense)


def make_layers(shape: M3Tiny) -> Dict[int, RadixAttention]:
    return {
        lid: RadixAttention(num_heads=shape.num_heads, head_dim=shape.head_dim, scaling=shape.head_dim**-0.5,
                            num_kv_heads=shape.num_kv_heads, layer_id=lid)
        for lid in range(len(shape.freq))
    }


# ---------------------------------------------------------------------------------------------
# The "model": per-token data, a function of (token id, position), per layer
# ---------------------------------------------------------------------------------------------


class TokenData:
    """q, k, v, idx_q, idx_k (and idx_v) of every (layer, token id, position), deterministic:
    two requests with the same tokens up to position p have the same data up to p."""

    def __init__(self, shape: M3Tiny, seed: int = 0, device: str = KIT_DEVICE):
        g = torch.Generator().manual_seed(seed)
        self.shape = shape
        self.device = device
        s = shape
        n_idx = s.num_index_heads or s.num_kv_heads

        def table(*dims):
            return torch.randn(len(s.freq), *dims, generator=g)

        self.tok = {
            "q": table(s.vocab, s.num_heads, s.head_dim), "k": table(s.vocab, s.num_kv_heads, s.head_dim),
            "v": table(s.vocab, s.num_kv_heads, s.head_dim), "idx_q": table(s.vocab, n_idx, s.index_dim),
            "idx_k": table(s.vocab, 1, s.index_dim), "idx_v": table(s.vocab, 1, s.index_dim),
        }
        ctx = s.context_len + 8
        self.pos = {
            "q": table(ctx, s.num_heads, s.head_dim), "k": table(ctx, s.num_kv_heads, s.head_dim),
            "v": table(ctx, s.num_kv_heads, s.head_dim), "idx_q": table(ctx, n_idx, s.index_dim),
            "idx_k": table(ctx, 1, s.index_dim), "idx_v": table(ctx, 1, s.index_dim),
        }

    def get(self, name: str, layer: int, tokens: Sequence[int], positions: Sequence[int]) -> torch.Tensor:
        t = torch.as_tensor(list(tokens), dtype=torch.long)
        p = torch.as_tensor(list(positions), dtype=torch.long)
        out = ((self.tok[name][layer][t] + self.pos[name][layer][p]) * 0.7).to(self.shape.dtype)
        return out.to(self.device)


# ---------------------------------------------------------------------------------------------
# Requests, batches and the layer calls
# ---------------------------------------------------------------------------------------------


@dataclass
class Req:
    tokens: List[int]  # the whole sequence (prompt + generated so far)
    row: int  # req_to_token row
    slots: List[int] = field(default_factory=list)  # slot of every cached position
    sgl: object = None  # SGLang's Req, for radix-cache flows
    prefix: int = 0  # cached prefix hit at admission


def forward_batch(runner: M3MockModelRunner, mode: ForwardMode, reqs: Sequence[Req], new_lens: Sequence[int],
                  new_slots: Sequence[Sequence[int]], *, seq_lens_override: Optional[Sequence[int]] = None) -> ForwardBatch:
    """A real ForwardBatch as the kit builds it (``_make_forward_batch``), from requests whose
    ``req_to_token`` rows are already written. ``new_lens[b]`` new tokens per request at the end
    of its sequence; ``seq_lens`` counts them (TARGET_VERIFY: ``seq_lens_override`` = committed)."""
    dev = runner.device
    prefix = [len(r.slots) - n for r, n in zip(reqs, new_lens)]
    seq = [len(r.slots) for r in reqs] if seq_lens_override is None else list(seq_lens_override)
    positions = [p + i for p, n in zip(prefix, new_lens) for i in range(n)]
    out_cache_loc = [s for ss in new_slots for s in ss]
    batch = ForwardBatch(
        forward_mode=mode,
        batch_size=len(reqs),
        input_ids=torch.zeros(sum(new_lens), dtype=torch.int64, device=dev),
        req_pool_indices=torch.tensor([r.row for r in reqs], dtype=torch.int64, device=dev),
        seq_lens=torch.tensor(seq, dtype=torch.int32, device=dev),
        seq_lens_cpu=torch.tensor(seq, dtype=torch.int32),
        out_cache_loc=torch.tensor(out_cache_loc, dtype=torch.int64, device=dev),
        seq_lens_sum=sum(seq),
        positions=torch.tensor(positions, dtype=torch.int64, device=dev),
    )
    runner.kv_index_translator.bind_own_plan(batch)
    if mode.is_extend() and not mode.is_target_verify():
        batch.extend_prefix_lens = torch.tensor(prefix, dtype=torch.int32, device=dev)
        batch.extend_prefix_lens_cpu = list(prefix)
        batch.extend_seq_lens = torch.tensor(list(new_lens), dtype=torch.int32, device=dev)
        batch.extend_seq_lens_cpu = list(new_lens)
        batch.extend_num_tokens = sum(new_lens)
    return batch


def layer_inputs(data: TokenData, layer: int, reqs: Sequence[Req], new_lens: Sequence[int]) -> dict:
    toks, pos = [], []
    for r, n in zip(reqs, new_lens):
        start = len(r.slots) - n
        toks += r.tokens[start:start + n]
        pos += list(range(start, start + n))
    shape = data.shape
    out = {name: data.get(name, layer, toks, pos) for name in ("q", "k", "v", "idx_q", "idx_k")}
    out["idx_v"] = None if shape.disable_value[layer] else data.get("idx_v", layer, toks, pos)
    return out


def run_layer(backend, layer: RadixAttention, fb: ForwardBatch, inputs: dict):
    """The model's call (minimax_m3.py forward_core): RadixAttention under a ForwardContext."""
    with torch.no_grad(), forward_context(ForwardContext(attn_backend=backend)):
        idx_o, o = layer(inputs["q"], inputs["k"], inputs["v"], fb, idx_q=inputs["idx_q"], idx_k=inputs["idx_k"],
                         idx_v=inputs["idx_v"])
    return idx_o, o


def write_prefix(runner, data: TokenData, layers: Sequence[int], reqs: Sequence[Req], upto: Sequence[int]):
    """Fill the KV pool with positions 0..upto[b]-1 of each request through the pool's setter
    (the cached prefix of an extend batch, or the history of a decode batch)."""
    pool = runner.token_to_kv_pool
    lay = make_layers(data.shape)
    for lid in layers:
        for r, n in zip(reqs, upto):
            if n == 0:
                continue
            loc = torch.tensor(r.slots[:n], dtype=torch.int64, device=runner.device)
            d = {name: data.get(name, lid, r.tokens[:n], range(n)) for name in ("k", "v", "idx_k", "idx_v")}
            idx_v = None if data.shape.disable_value[lid] else d["idx_v"]
            pool.set_fused_kv_index_buffer(lay[lid], loc, d["k"], d["v"], d["idx_k"], idx_v)


def place(runner, reqs: Sequence[Req], layout: str, seed: int = 0):
    """Give every request slots for all its tokens with one of the kit's layouts
    (``make_loc_fn``: contiguous, shuffled_pages, interleaved_pages) and write req_to_token."""
    shape = runner.shape
    seq = tuple(len(r.tokens) for r in reqs)
    per_req = -(-max(seq) // shape.page) * shape.page
    loc = make_loc_fn(layout, batch_size=len(reqs), seq_lens=seq, prefix_lens=(0,) * len(reqs),
                      page_size=shape.page, max_context_len=per_req, seed=seed)
    for b, r in enumerate(reqs):
        r.slots = [loc(b, p) for p in range(len(r.tokens))]
        assert max(r.slots) < shape.num_pages * shape.page
        runner.req_to_token_pool.req_to_token[r.row, : len(r.slots)] = torch.tensor(
            r.slots, dtype=torch.int32, device=runner.device)


# ---------------------------------------------------------------------------------------------
# Expected outputs: msa_sgl's float64 reference on an independent layout of the same data
# ---------------------------------------------------------------------------------------------



def step_shape(mode: ForwardMode, drafts: int = 3):
    """(draft tokens, query tokens per request, msa_sgl_stats kind) of a decode step or of a
    chain-verify step with ``drafts`` drafts."""
    ndt = drafts if mode == ForwardMode.TARGET_VERIFY else 0
    return ndt, max(1, ndt), ("verify" if ndt else "decode")


def prepare(runner, data: TokenData, reqs: Sequence[Req], new_lens: Sequence[int], layout: str, seed: int = 0):
    """Pages for the requests (``layout``, as :func:`place`) and every sparse layer's K/V and
    index keys written for all but their last ``new_lens[b]`` tokens: what earlier steps left
    in the pool before the step under test."""
    place(runner, reqs, layout, seed=seed)
    write_prefix(runner, data, runner.shape.sparse_layers, reqs, [len(r.tokens) - n for r, n in zip(reqs, new_lens)])


def step_batch(runner, mode: ForwardMode, reqs: Sequence[Req], new_lens: Sequence[int]) -> ForwardBatch:
    """The ForwardBatch of a step that computes each request's last ``new_lens[b]`` tokens
    (TARGET_VERIFY: ``seq_lens`` counts the committed tokens only, as SGLang's verify batches)."""
    committed = [len(r.slots) - n for r, n in zip(reqs, new_lens)] if mode == ForwardMode.TARGET_VERIFY else None
    return forward_batch(runner, mode, reqs, new_lens, [r.slots[len(r.slots) - n:] for r, n in zip(reqs, new_lens)],
                         seq_lens_override=committed)

def reference_rows(data: TokenData, layer: int, reqs: Sequence[Req], new_lens: Sequence[int],
                   seq_lens: Optional[Sequence[int]] = None):
    """(out float64 [T, Hq*D], topk [T, Hkv, k], args) for the new rows of each request, computed
    by msa_sgl.reference on a fresh contiguous paged cache built from the token data."""
    s = data.shape
    B = s.block
    seq = [len(r.slots) for r in reqs] if seq_lens is None else list(seq_lens)
    n_pages = [max(1, -(-L // B)) for L in seq]
    table = torch.zeros(len(reqs), max(n_pages), dtype=torch.int32)
    total_pages = sum(n_pages)
    k = torch.full((total_pages, B, s.num_kv_heads, s.head_dim), float("nan"), dtype=s.dtype)
    v = torch.full_like(k, float("nan"))
    ki = torch.full((total_pages, B, s.index_dim), float("nan"), dtype=s.dtype)
    q, qi, cu = [], [], [0]
    page = 0
    for b, (r, n, L) in enumerate(zip(reqs, new_lens, seq)):
        toks = r.tokens[:L]
        kk = data.get("k", layer, toks, range(L)).cpu()
        vv = data.get("v", layer, toks, range(L)).cpu()
        ii = data.get("idx_k", layer, toks, range(L))[:, 0].cpu()
        for i in range(n_pages[b]):
            lo, hi = i * B, min(L, (i + 1) * B)
            table[b, i] = page
            k[page, : hi - lo], v[page, : hi - lo], ki[page, : hi - lo] = kk[lo:hi], vv[lo:hi], ii[lo:hi]
            page += 1
        q.append(data.get("q", layer, toks[L - n:], range(L - n, L)).cpu())
        qi.append(data.get("idx_q", layer, toks[L - n:], range(L - n, L)).cpu())
        cu.append(cu[-1] + n)
    args = dict(q=torch.cat(q), k_cache=k, v_cache=v, q_idx=torch.cat(qi), k_idx_cache=ki, page_table=table,
                cu_seqlens_q=torch.tensor(cu, dtype=torch.int32), seq_lens_k=torch.tensor(seq, dtype=torch.int32),
                config=s.config)
    ref_topk = reference.index_topk(**{a: args[a] for a in ("q_idx", "k_idx_cache", "page_table", "cu_seqlens_q",
                                                              "seq_lens_k", "config")})
    return args, ref_topk


def check_against_reference(out: torch.Tensor, data: TokenData, layer: int, reqs, new_lens, seq_lens=None):
    """Asserts ``out`` (the backend's [T, Hq*D]) is msa_sgl's float64 reference, up to fp16
    rounding; where the kernel's selection differs from the reference's it may only be by a
    genuine tie (harness.tolerance.compare_topk), and then the reference main branch is run on
    the kernel's selection."""
    from harness.tolerance import compare_topk, output_error

    args, ref_topk = reference_rows(data, layer, reqs, new_lens, seq_lens)
    idx_args = {a: args[a] for a in ("q_idx", "k_idx_cache", "page_table", "cu_seqlens_q", "seq_lens_k", "config")}
    on_device = {a: (v.to(KIT_DEVICE) if isinstance(v, torch.Tensor) else v) for a, v in idx_args.items()}
    got_topk = msa_sgl.index_topk(**on_device).cpu()
    compare_topk(got_topk, ref_topk, reference.index_scores(**idx_args), args["q_idx"], args["k_idx_cache"],
                 args["config"])
    ref = reference.sparse_attention(q=args["q"], k_cache=args["k_cache"], v_cache=args["v_cache"], topk_idx=got_topk,
                                     page_table=args["page_table"], cu_seqlens_q=args["cu_seqlens_q"],
                                     seq_lens_k=args["seq_lens_k"], config=args["config"])
    return output_error(out.reshape(ref.shape).cpu(), ref, data.shape.dtype)


# ---------------------------------------------------------------------------------------------
# Radix-cache scheduling, the way SGLang's scheduler drives the cache (match, lock, allocate,
# extend, insert whole pages, free the tail)
# ---------------------------------------------------------------------------------------------


def make_radix_cache(runner: M3MockModelRunner) -> UnifiedRadixCache:
    """SGLang 0.5.23's default prefix cache for M3 (``create_unified_radix_cache``: FULL)."""
    params = CacheInitParams(
        req_to_token_pool=runner.req_to_token_pool,
        token_to_kv_pool_allocator=runner.token_to_kv_pool_allocator,
        page_size=runner.shape.page,
        disable=False,
        tree_components=(ComponentType.FULL,),
        eviction_policy="lru",
    )
    return UnifiedRadixCache(params=params)


def admit(runner, cache: UnifiedRadixCache, tokens: Sequence[int], rid: str) -> Req:
    """What the scheduler does for a new request: a real ``Req`` with a req_to_token row, the
    longest cached prefix matched and locked, pages for the rest from the real allocator
    (``alloc_extend``), the row written. ``req.prefix`` is the hit length."""
    sgl = SglReq(rid=rid, origin_input_text="", origin_input_ids=array("q", tokens),
                 sampling_params=SamplingParams(temperature=0, max_new_tokens=1))
    runner.req_to_token_pool.alloc([sgl])
    sgl.output_ids = array("q")
    sgl.extra_key = None
    m = cache.match_prefix(MatchPrefixParams(key=RadixKey(array("q", tokens)), req=sgl))
    prefix = int(m.device_prefix_len)
    sgl.prefix_len = prefix
    sgl.last_node = m.last_device_node
    sgl.lock = cache.lock(m.last_device_node)
    prefix_slots = cache.path_device_indices(m.last_device_node)[:prefix]
    n = len(tokens)
    last = int(prefix_slots[-1]) if prefix else -1
    dev = runner.device
    new = runner.token_to_kv_pool_allocator.alloc_extend(
        prefix_lens=torch.tensor([prefix], dtype=torch.int64, device=dev),
        prefix_lens_cpu=torch.tensor([prefix], dtype=torch.int64),
        seq_lens=torch.tensor([n], dtype=torch.int64, device=dev), seq_lens_cpu=torch.tensor([n], dtype=torch.int64),
        last_loc=torch.tensor([last], dtype=torch.int64, device=dev), extend_num_tokens=n - prefix,
    )
    assert new is not None, "out of KV pages"
    row = sgl.kv.req_pool_idx
    slots = prefix_slots.tolist() + new.tolist()
    runner.req_to_token_pool.write((row, slice(0, n)), torch.tensor(slots, dtype=torch.int32, device=runner.device))
    sgl.kv.cache_protected_len = prefix
    sgl.kv.kv_committed_len = n
    sgl.kv.kv_allocated_len = n
    req = Req(tokens=list(tokens), row=row, slots=slots, sgl=sgl)
    req.prefix = prefix
    return req


def finish(cache: UnifiedRadixCache, req: Req) -> None:
    """SGLang's release of a finished request that keeps its KV (sglang.test.mem_cache_utils.
    finish_req): whole pages into the tree, the rest freed, the lock dropped."""
    finish_req(cache, req.sgl, req.sgl.owned_kv_len())


def cached_prefix_len(cache: UnifiedRadixCache, tokens: Sequence[int]) -> int:
    return int(cache.match_prefix(MatchPrefixParams(key=RadixKey(array("q", tokens)))).device_prefix_len)


def evict_all(cache: UnifiedRadixCache) -> int:
    return int(cache.evict(EvictParams(num_tokens=10**9)).num_tokens_evicted)


def expect_close(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype, what: str) -> None:
    """Two kernel results of the same rows: equal up to the output bound of the dtype."""
    from harness.tolerance import BOUNDS

    bound = BOUNDS[dtype]
    a64, b64 = a.double().cpu(), b.double().cpu()
    diff = float((a64 - b64).norm() / max(b64.norm(), 1e-30))
    assert diff <= bound.rel_l2, f"{what}: relative L2 difference {diff:.3e} > {bound.rel_l2:.1e}"

