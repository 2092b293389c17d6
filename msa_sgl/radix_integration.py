"""msa_sgl inside SGLang 0.5.23: MiniMax-M3's sparse layers run msa_sgl's kernels, through
SGLang's plugin entry point, with nothing in SGLang patched on disk.

How it gets in
--------------
``pyproject.toml`` declares the entry point ``sglang.srt.plugins: msa_sgl =
msa_sgl.radix_integration:register``. SGLang calls every such function, with no argument, in
each of its processes (``sglang serve``, ``Engine``, every scheduler subprocess) through
``sglang.srt.plugins.load_plugins()``, then applies the hooks registered with its
``HookRegistry``. ``register()`` registers:

* a class REPLACE of ``sglang.srt.layers.attention.minimax_sparse_backend.
  MiniMaxSparseAttnBackend`` by :func:`backend_class` (a subclass of it). SGLang builds that
  class in exactly one place (``attention_registry.attn_backend_wrapper``, a function-local
  import read at call time) and only for MiniMax-M3 sparse models, so the subclass is what M3
  gets and nothing else changes. It is the narrowest hook that works: ``register_attention_
  backend`` / ``add_attention_backend_choices`` swap the *dense* backend chosen by
  ``--attention-backend`` (the M3 sparse backend is chosen by architecture, after it), and an
  AROUND hook on ``attn_backend_wrapper`` would build SGLang's backend and then a second one.
  Being a subclass, it keeps everything it does not override (IDLE batches, TBO aliases, the
  ``kv_pool`` attribute the model reads, the hybrid dense/sparse routing), every unsupported
  case is ``super()``, and a future SGLang that renames the class makes ``apply_hooks`` log
  and skip the target: SGLang's own path, never a broken one. The subclass decides whether
  msa_sgl serves in ``__init__`` (the device is known there), not at registration.
* with per-page index data on (``MSA_SGL_PAGE_DATA=1``): AFTER hooks on
  ``KVCacheConfigurator._build_minimax_sparse_kv_pool`` (attaches a :class:`PageIndexStore`
  to the pool it returns, as ``pool.msa_sgl_page_data``) and on
  ``DefaultPoolConfigurator._compute_cell_size`` (adds the store's bytes per token, so
  SGLang's memory sizing counts it), and one on ``MiniMaxSparseKVPool.move_kv_cache`` (moves
  the store's rows with the pool's; SGLang 0.5.23 raises there, so it never runs today).
  ``MiniMaxSparseKVPool`` itself is not replaced: it is isinstance-checked in many places and
  subclassed by other pools; composition leaves it untouched.

``import msa_sgl.radix_integration`` imports nothing from SGLang; SGLang is imported inside
``register()`` and the class factory.

Switches (environment, read in every process)
---------------------------------------------
* ``MSA_SGL_DISABLE=1``: ``register()`` does nothing; SGLang's own MiniMax path serves.
  (``SGLANG_PLUGINS=<other names>`` also keeps the plugin from loading.)
* ``MSA_SGL_MODES``: which forward kinds msa_sgl serves, comma-separated among ``extend``
  (prefill, chunked prefill, mixed batches), ``decode``, ``verify`` (speculative
  TARGET_VERIFY with chain drafts); default all three. The others go to SGLang's path.
* ``MSA_SGL_PAGE_DATA=1``: per-page index data (8-bit index keys per physical page), off by
  default: msa_sgl's kernels do not read it yet.
* ``MSA_SGL_FORCE=1``: serve on a device other than a Hopper GPU (tests: the CPU through
  Triton's interpreter, ``TRITON_INTERPRET=1``; other GPUs, untested).
* ``MSA_SGL_VALIDATE=1``: check every batch's metadata values (synchronises; debugging).
* ``MSA_SGL_PREFILL_WORKSPACE_MB``: a positive int, the most MiB of partial outputs the
  prefill main branch holds at once (``workspace_bytes`` of ``msa_sgl.msa_attention``; unset:
  its default, 2.25 GiB, transient, for extend batches of 1024 tokens or more). Less memory
  costs speed (below one KV group's rows, each row range re-reads the K/V it chose); more can
  gain a little (one pass instead of two: 2-3% at M3 shapes).

What falls back to SGLang's own path (named in one start-up log line, never silently)
-------------------------------------------------------------------------------------
Per model: no CUDA Hopper device (unless forced), ROCm/NPU, page size != sparse block size,
block size / top-k / init / local blocks outside what ``msa_sgl.MSAConfig`` takes, score type
``lse``, an fp8 (or otherwise non fp16/bf16/fp32) KV or index cache, fp8 attention GEMMs,
HiSparse, indexer context parallelism, top-k reuse across layers (``index_topk_freq > 1``), a
non-NHD KV layout, decode context parallelism, index heads per rank != KV heads per rank,
head dims outside msa_sgl's kernels. Per layer: layers with the index-value path
(``sparse_disable_index_value`` = 0: they return ``idx_o``, which msa_sgl does not compute).
Per kind: ``MSA_SGL_MODES``; decode with SGLang's dense-sparse decode option; verify with tree
drafts (EAGLE top-k > 1, n-gram). Batches of other forward modes (draft extend, split
prefill, dLLM) go to SGLang's path with one warning per mode. An attention sink is never
plumbed through SGLang 0.5.23's MiniMax backend (it passes ``sink=None``), so there is nothing
to fall back from. Conventions follow SGLang's backend exactly: ``topk`` counts the forced
blocks, softmax and index scales are ``1/sqrt(D)`` and ``1/sqrt(d_idx)`` (SGLang does not pass
``layer.scaling`` to its sparse kernels either), layers with quantisation scales raise.

Hot path: metadata is built once per forward batch on the device (no ``.item()``, ``.cpu()``
or ``.tolist()`` on device tensors; host sizes come from SGLang's ``*_cpu`` fields), K/V and
index keys are written at ``out_cache_loc`` by the pool's own setter, the pools are read
through zero-copy paged views, and every launch has shapes that depend only on tensor shapes.
Extend: one ``msa_sgl.MSAPrefillWrapper`` per batch, planned at its first sparse layer (row
requests, index tile map and launch shapes built once), ``run()`` per layer (``msa_attention``'s
kernels and results); ``cu_seqlens_q`` from ``extend_seq_lens``, ``seq_lens_k = seq_lens``, a
page table ``ceil(max seq_lens_cpu / B)`` wide. Decode: one query
per request. Verify (TARGET_VERIFY): SGLang's ``seq_lens`` are the committed lengths and the
``speculative_num_draft_tokens`` drafts follow them, so ``q_len`` = drafts and ``seq_len_k =
seq_lens + drafts``. Decode and verify (page table as wide as ``req_to_token``, so fixed) go
through one ``msa_sgl.MSADecodeWrapper`` per backend: ``init_forward_metadata_in_graph`` (or,
for eager callers that skip it, the first layer) calls its ``plan()`` once per forward batch,
which copies the batch's metadata into the wrapper's own buffers with device ops only, and each
layer's ``run()`` launches the kernels alone, into a fresh output tensor. SGLang records the
in-graph hook into its decode CUDA graphs and replays it, so a replay re-plans into the same
buffers the captured ``run()`` kernels read. The wrapper is built outside any capture (in
``init_cuda_graph_state``, else by the first step batch) for ``max(graph max_bs, most running
requests)`` requests and ``max(1, draft tokens)`` query tokens each; a larger batch, or verify
with more than 16 drafts (named in the start-up line), runs ``msa_sgl.msa_attention`` per
layer instead, on metadata that graphs read from persistent buffers (``init_cuda_graph_state``).
Padded graph rows (``seq_len`` fill 1, request row 0) read the padding page 0.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

__all__ = [
    "register",
    "backend_class",
    "PageIndexStore",
    "page_data_layer_ids",
    "ENV_DISABLE",
    "ENV_MODES",
    "ENV_PAGE_DATA",
    "ENV_FORCE",
    "ENV_VALIDATE",
    "LOG_PREFIX",
]

logger = logging.getLogger(__name__)

ENV_DISABLE = "MSA_SGL_DISABLE"
ENV_MODES = "MSA_SGL_MODES"
ENV_PAGE_DATA = "MSA_SGL_PAGE_DATA"
ENV_FORCE = "MSA_SGL_FORCE"
ENV_VALIDATE = "MSA_SGL_VALIDATE"
ENV_PREFILL_WORKSPACE = "MSA_SGL_PREFILL_WORKSPACE_MB"
LOG_PREFIX = "[msa_sgl]"

KINDS = ("extend", "decode", "verify")

BACKEND_TARGET = "sglang.srt.layers.attention.minimax_sparse_backend.MiniMaxSparseAttnBackend"
POOL_BUILDER_TARGET = (
    "sglang.srt.mem_cache.kv_cache_configurator.KVCacheConfigurator._build_minimax_sparse_kv_pool"
)
CELL_SIZE_TARGET = "sglang.srt.model_executor.pool_configurator.DefaultPoolConfigurator._compute_cell_size"
POOL_MOVE_TARGET = "sglang.srt.mem_cache.memory_pool.MiniMaxSparseKVPool.move_kv_cache"

_HEAD_DIMS = (16, 32, 64, 128)  # what msa_sgl's kernels take (msa_sgl.api)

# Lines already logged in this process (TBO builds several backends; one line is enough).
_LOGGED: set = set()
# The subclass, built once per base class (never a module global bound to SGLang's class:
# HookRegistry rebinds every module global that *is* the replaced class).
_CLASS_CACHE: Dict[int, type] = {}


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _log_once(level: int, message: str) -> None:
    if message in _LOGGED:
        return
    _LOGGED.add(message)
    logger.log(level, message)


def prefill_workspace_bytes() -> Optional[int]:
    """``MSA_SGL_PREFILL_WORKSPACE_MB`` in bytes (None when unset); anything but a positive int raises."""
    raw = os.environ.get(ENV_PREFILL_WORKSPACE, "").strip()
    if not raw:
        return None
    try:
        mib = int(raw)
    except ValueError:
        mib = 0
    if mib < 1:
        raise ValueError(f"{ENV_PREFILL_WORKSPACE}: expected a positive int (MiB), got {raw!r}")
    return mib << 20


def served_kinds() -> Tuple[set, Optional[str]]:
    """The forward kinds ``MSA_SGL_MODES`` asks for, and why others are off (None: all on)."""
    raw = os.environ.get(ENV_MODES)
    if raw is None or not raw.strip():
        return set(KINDS), None
    want = {x.strip().lower() for x in raw.split(",") if x.strip()}
    unknown = want - set(KINDS)
    if unknown:
        raise ValueError(f"{ENV_MODES}: expected a comma-separated subset of {KINDS}, got {raw!r}")
    off = [k for k in KINDS if k not in want]
    return want, (f"{ENV_MODES}={raw!r}" if off else None)


# ---------------------------------------------------------------------------------------------
# Registration
# ---------------------------------------------------------------------------------------------


def register() -> bool:
    """The ``sglang.srt.plugins`` entry point. Returns whether hooks were registered."""
    if _env_flag(ENV_DISABLE):
        _log_once(logging.INFO, f"{LOG_PREFIX} {ENV_DISABLE}=1: not registered; SGLang's own MiniMax sparse path serves")
        return False
    try:
        from sglang.srt.plugins.hook_registry import HookRegistry, HookType

        cls = backend_class()
    except ImportError as exc:  # an SGLang without this backend: nothing to hook
        _log_once(logging.WARNING, f"{LOG_PREFIX} not registered: SGLang's MiniMax sparse backend is missing ({exc})")
        return False
    hooks = getattr(HookRegistry, "_hooks", {})

    def already(target, hook) -> bool:
        return any(h is hook for _, h, _ in hooks.get(target, ()))

    if not already(BACKEND_TARGET, cls):
        HookRegistry.register(BACKEND_TARGET, cls, HookType.REPLACE)
    if _env_flag(ENV_PAGE_DATA):
        for target, fn in (
            (POOL_BUILDER_TARGET, _after_build_pool),
            (CELL_SIZE_TARGET, _after_cell_size),
            (POOL_MOVE_TARGET, _after_move_kv_cache),
        ):
            if not already(target, fn):
                HookRegistry.register(target, fn, HookType.AFTER)
    return True


# ---------------------------------------------------------------------------------------------
# Per-page index data: a sidecar of the KV pool, indexed by physical page
# ---------------------------------------------------------------------------------------------


@dataclass
class PageIndexStore:
    """Per-physical-page index data of the sparse layers msa_sgl serves, beside SGLang's pool.

    ``k8[i]``: float8_e4m3fn ``[num_pages, page_size, d_idx]`` and ``scale[i]``: float32
    ``[num_pages, page_size]`` for layer ``layer_ids[i]``, page ``p`` = slots
    ``p * page_size .. + page_size - 1`` of the pool (page 0 is SGLang's padding page). Written
    only at the slots of ``out_cache_loc`` (the pages those tokens touch), right where SGLang
    writes the same tokens' index keys, so a radix-cache prefix hit (whole pages) finds its
    pages' data already there, and a page's next owner rewrites every token it uses.
    """

    layer_ids: Tuple[int, ...]
    page_size: int
    k8: List = field(repr=False)
    scale: List = field(repr=False)
    # tests: a list to which every write appends (layer_id, slots on the host); None in serving
    trace: Optional[list] = field(default=None, repr=False)

    @classmethod
    def allocate(cls, layer_ids: Sequence[int], num_pages: int, page_size: int, index_dim: int, device):
        import torch

        k8 = [torch.zeros(num_pages, page_size, index_dim, dtype=torch.float8_e4m3fn, device=device) for _ in layer_ids]
        scale = [torch.zeros(num_pages, page_size, dtype=torch.float32, device=device) for _ in layer_ids]
        return cls(tuple(int(x) for x in layer_ids), int(page_size), k8, scale)

    @staticmethod
    def bytes_per_token(num_layers: int, index_dim: int) -> int:
        return num_layers * (index_dim * 1 + 4)

    @property
    def num_pages(self) -> int:
        return self.k8[0].shape[0] if self.k8 else 0

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.k8 + self.scale)

    def index_of(self, layer_id: int) -> Optional[int]:
        try:
            return self.layer_ids.index(layer_id)
        except ValueError:
            return None

    def write(self, layer_id: int, k_idx, slots) -> None:
        """Quantise new index keys ``k_idx`` ``[n, (1,) d_idx]`` into the rows of ``slots``."""
        i = self.index_of(layer_id)
        if i is None:
            raise ValueError(f"layer_id: expected one of the page-data layers {list(self.layer_ids)}, got {layer_id}")
        d = self.k8[i].shape[-1]
        if k_idx.shape[0] != slots.shape[0] or k_idx.numel() != slots.shape[0] * d:
            raise ValueError(
                f"k_idx: expected [{slots.shape[0]}, {d}] index keys (one per out_cache_loc slot), got {tuple(k_idx.shape)}"
            )
        from msa_sgl import quantize_index_keys

        quantize_index_keys(k_idx.reshape(-1, d), slots, self.k8[i], self.scale[i])
        if self.trace is not None:
            self.trace.append((layer_id, slots.detach().cpu().clone()))

    def move(self, tgt_loc, src_loc) -> None:
        """Copy the rows of slots ``src_loc`` to ``tgt_loc`` (what the pool's move_kv_cache does)."""
        for k8, scale in zip(self.k8, self.scale):
            d = k8.shape[-1]
            k8.view(-1, d)[tgt_loc] = k8.view(-1, d)[src_loc]
            scale.view(-1)[tgt_loc] = scale.view(-1)[src_loc]

    def dequantized(self, layer_id: int):
        """float32 ``[num_pages, page_size, d_idx]`` (tests, debugging)."""
        i = self.index_of(layer_id)
        return self.k8[i].float() * self.scale[i][..., None]


def page_data_layer_ids(sparse_cfg: dict, start_layer: int, end_layer: int) -> List[int]:
    """The layers that get per-page data: local sparse layers without the index-value path
    (the ones msa_sgl serves). Pool builder and memory sizing both use this one rule."""
    freq = sparse_cfg["sparse_attention_freq"]
    flags = sparse_cfg.get("sparse_disable_index_value") or []
    disabled = {i for i, f in enumerate(flags) if f != 0}
    return [i for i, f in enumerate(freq) if f != 0 and i in disabled and start_layer <= i < end_layer]


def _page_data_blocked_reason() -> Optional[str]:
    """Features whose transfers do not carry the sidecar (HiCache, PD disaggregation)."""
    try:
        from sglang.srt.runtime_context import get_disagg, get_memory

        if getattr(get_memory(), "enable_hierarchical_cache", False):
            return "hierarchical cache (HiCache) on: its host copies do not carry per-page data"
        if getattr(get_memory(), "enable_hisparse", False):
            return "HiSparse on"
        mode = getattr(get_disagg(), "disaggregation_mode", "null")
        if mode not in (None, "null"):
            return f"PD disaggregation ({mode}): KV transfers do not carry per-page data"
    except Exception:  # noqa: BLE001 - an unpublished context (unit tests): nothing blocks
        return None
    return None


def _after_build_pool(pool, configurator, *args, **kwargs):
    """AFTER hook on KVCacheConfigurator._build_minimax_sparse_kv_pool: attach the sidecar."""
    from sglang.srt.configs.model_config import get_minimax_sparse_attention_config

    if not hasattr(pool, "get_index_k_buffer"):  # the NVFP4 pool has its own layout
        return None
    reason = _page_data_blocked_reason()
    if reason is not None:
        _log_once(logging.INFO, f"{LOG_PREFIX} per-page index data off: {reason}")
        return None
    sparse_cfg = get_minimax_sparse_attention_config(configurator.model_config.hf_config)
    info = configurator.layer_info
    attach_page_data(pool, page_data_layer_ids(sparse_cfg, info.start_layer, info.end_layer))
    return None


def attach_page_data(pool, layer_ids: Sequence[int]) -> Optional[PageIndexStore]:
    """Allocates a :class:`PageIndexStore` sized like ``pool``'s index buffers and attaches it
    as ``pool.msa_sgl_page_data`` (what the AFTER hook on the pool builder does)."""
    layer_ids = [lid for lid in layer_ids if lid in getattr(pool, "sparse_layer_id_mapping", {})]
    if not layer_ids:
        return None
    rows, _, index_dim = pool.get_index_k_buffer(layer_ids[0]).shape
    if rows % pool.page_size != 0:
        raise ValueError(
            f"pool: expected index buffer rows to be a multiple of page_size = {pool.page_size}, got {rows}"
        )
    store = PageIndexStore.allocate(layer_ids, rows // pool.page_size, pool.page_size, index_dim, pool.device)
    pool.msa_sgl_page_data = store
    _log_once(
        logging.INFO,
        f"{LOG_PREFIX} per-page index data: {len(layer_ids)} layers x {store.num_pages} pages of {pool.page_size} "
        f"tokens, {store.nbytes / 2**20:.1f} MiB (fp8 index keys + per-token scales)",
    )
    return store


def _after_cell_size(cell_size, configurator, kvc, num_layers, *args, **kwargs):
    """AFTER hook on DefaultPoolConfigurator._compute_cell_size: count the sidecar per token."""
    from sglang.srt.configs.model_config import (
        get_minimax_sparse_attention_config,
        is_minimax_sparse,
        uses_minimax_m3_nvfp4_native_stack,
    )

    hf_config = kvc.model_config.hf_config
    if not is_minimax_sparse(hf_config) or uses_minimax_m3_nvfp4_native_stack(kvc.model_config.quantization):
        return None
    if _page_data_blocked_reason() is not None:
        return None
    sparse_cfg = get_minimax_sparse_attention_config(hf_config)
    info = kvc.layer_info
    n = len(page_data_layer_ids(sparse_cfg, info.start_layer, info.end_layer))
    return cell_size + PageIndexStore.bytes_per_token(n, sparse_cfg["sparse_index_dim"])


def _after_move_kv_cache(result, pool, tgt_loc, src_loc, *args, **kwargs):
    store = getattr(pool, "msa_sgl_page_data", None)
    if store is not None:
        store.move(tgt_loc, src_loc)
    return None


# ---------------------------------------------------------------------------------------------
# The backend
# ---------------------------------------------------------------------------------------------


@dataclass
class ServingPlan:
    """What msa_sgl serves in one backend, decided once in its __init__."""

    active: bool
    layers: Tuple[int, ...]  # sparse layers msa_sgl serves (in the served kinds)
    stock_layers: Dict[int, str]  # sparse layer -> why SGLang's path serves it
    kinds: Tuple[str, ...]  # forward kinds msa_sgl serves
    stock_kinds: Dict[str, str]  # kind -> why SGLang's path serves it
    reasons: List[str]  # why msa_sgl serves nothing (when not active)
    config: Optional[object] = None  # msa_sgl.MSAConfig
    device: str = ""
    # decode / verify: the kinds served through one msa_sgl.MSADecodeWrapper (plan once per
    # batch, kernels only per layer), the others (kind -> why) through msa_sgl.msa_attention
    wrapper_kinds: Tuple[str, ...] = ()
    direct_step_kinds: Dict[str, str] = field(default_factory=dict)
    step_q_len: int = 1  # the wrapper's max_q_len: 1, or the draft tokens when it serves verify
    num_q_heads: int = 0  # query heads per rank (the wrapper's Hq)
    workspace_bytes: Optional[int] = None  # msa_attention's workspace_bytes (MSA_SGL_PREFILL_WORKSPACE_MB)

    def serves(self, layer_id: int, kind: str) -> bool:
        return self.active and kind in self.kinds and layer_id in self.layers

    def summary(self, num_sparse: int) -> str:
        if not self.active:
            return (
                f"{LOG_PREFIX} MiniMax-M3 sparse attention: msa_sgl inactive, SGLang's own path serves all "
                f"{num_sparse} sparse layers: {'; '.join(self.reasons)}"
            )
        c = self.config
        parts = [
            f"{LOG_PREFIX} MiniMax-M3 sparse attention: msa_sgl serves {len(self.layers)} of {num_sparse} sparse "
            f"layers {_ranges(self.layers)} for {', '.join(self.kinds)} on {self.device} "
            f"(block {c.block_size}, topk {c.topk}, init {c.num_init_blocks}, local {c.num_local_blocks})"
        ]
        by_reason: Dict[str, List[int]] = {}
        for lid, why in self.stock_layers.items():
            by_reason.setdefault(why, []).append(lid)
        for why, lids in by_reason.items():
            parts.append(f"SGLang's path serves layers {_ranges(lids)}: {why}")
        for kind, why in self.stock_kinds.items():
            parts.append(f"SGLang's path serves {kind}: {why}")
        if self.wrapper_kinds:
            parts.append(
                f"{' and '.join(self.wrapper_kinds)} through msa_sgl.MSADecodeWrapper (plan once per batch, kernels only "
                f"per layer; up to {self.step_q_len} query token{'s' if self.step_q_len > 1 else ''} per request)"
            )
        if "extend" in self.kinds:
            parts.append("extend through msa_sgl.MSAPrefillWrapper (plan once per batch, kernels only per layer)")
        for kind, why in self.direct_step_kinds.items():
            parts.append(f"{kind} through msa_sgl.msa_attention per layer: {why}")
        return "; ".join(parts)


def _ranges(ids: Sequence[int]) -> str:
    ids = sorted(ids)
    out, i = [], 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        out.append(str(ids[i]) if i == j else f"{ids[i]}-{ids[j]}")
        i = j + 1
    return "[" + ", ".join(out) + "]"


def _device_reason(device) -> Optional[str]:
    import torch

    device = torch.device(device)
    forced = _env_flag(ENV_FORCE)
    if device.type == "cuda":
        from sglang.srt.utils import is_hip

        if is_hip():
            return "ROCm: msa_sgl's kernels are for NVIDIA Hopper"
        major, minor = torch.cuda.get_device_capability(device)
        if major != 9 and not forced:
            return f"GPU SM{major}{minor}: msa_sgl targets Hopper (SM90); {ENV_FORCE}=1 runs it anyway"
        return None
    if not forced:
        return f"device {device}: msa_sgl runs on CUDA (Hopper) GPUs"
    if device.type == "cpu":
        from msa_sgl import ops

        if not ops.INTERPRETED:
            return "device cpu: msa_sgl's kernels run on the CPU only through Triton's interpreter (TRITON_INTERPRET=1)"
        return None
    return f"device {device}: msa_sgl's kernels run on CUDA, or the CPU through Triton's interpreter"


def _plan(backend, runner) -> ServingPlan:
    """Everything msa_sgl needs, checked once on the host; each miss has a reason."""
    import torch

    from msa_sgl import MSAConfig

    reasons: List[str] = []
    pool = backend.kv_pool
    main = pool.main_pool
    device = str(backend.req_to_token.device)
    why = _device_reason(backend.req_to_token.device)
    if why:
        reasons.append(why)
    if getattr(backend, "is_npu", False):
        reasons.append("Ascend NPU")
    if backend.page_size != backend.block_size_k:
        reasons.append(f"page size {backend.page_size} != sparse block size {backend.block_size_k} (use --page-size {backend.block_size_k})")
    config = None
    try:
        config = MSAConfig(
            block_size=int(backend.block_size_k),
            topk=int(backend.topk_blocks),
            num_init_blocks=int(backend.init_blocks),
            num_local_blocks=int(backend.local_blocks),
        )
    except ValueError as exc:
        reasons.append(f"sparse config not supported ({exc})")
    if backend.score_type != "max":
        reasons.append(f"score type {backend.score_type!r} (msa_sgl implements 'max')")
    dtypes = (torch.float16, torch.bfloat16, torch.float32)
    if main.dtype not in dtypes:
        reasons.append(f"KV cache dtype {main.dtype} (msa_sgl reads fp16/bf16/fp32 caches)")
    for sub in (pool.index_k_pool, pool.index_kv_pool):
        if sub is not None and sub.dtype != main.dtype:
            reasons.append(f"index key cache dtype {sub.dtype} != KV cache dtype {main.dtype}")
            break
    if getattr(backend, "fp8_attn_gemm", False):
        reasons.append("fp8 attention GEMMs")
    if backend.hisparse_coordinator is not None:
        reasons.append("HiSparse")
    if getattr(backend, "indexer_cp", None) is not None:
        reasons.append("indexer context parallelism (SGLANG_MINIMAX_M3_INDEXER_CP)")
    if getattr(backend, "index_topk_freq", 1) != 1:
        reasons.append(f"top-k reuse across layers (index_topk_freq {backend.index_topk_freq})")
    if getattr(main, "kv_cache_layout", "nhd") != "nhd":
        reasons.append(f"KV cache layout {main.kv_cache_layout!r} (msa_sgl reads NHD)")
    if main.head_dim not in _HEAD_DIMS:
        reasons.append(f"head dim {main.head_dim} (kernels take {_HEAD_DIMS})")
    if backend.idx_head_dim not in _HEAD_DIMS:
        reasons.append(f"index head dim {backend.idx_head_dim} (kernels take {_HEAD_DIMS})")
    try:
        from sglang.srt.runtime_context import get_parallel

        parallel = get_parallel()
        tp = int(parallel.attn_tp_size)
        dcp = int(getattr(parallel, "attn_dcp_size", 1) or 1)
    except Exception:  # noqa: BLE001 - unpublished context: single rank
        tp, dcp = 1, 1
    if dcp != 1:
        reasons.append(f"decode context parallelism (attn_dcp_size {dcp})")
    from sglang.srt.configs.model_config import get_minimax_sparse_attention_config

    sparse_cfg = get_minimax_sparse_attention_config(runner.model_config.hf_config)
    total_idx = int(sparse_cfg["sparse_num_index_heads"])
    idx_heads = total_idx // max(1, min(tp, total_idx))
    if idx_heads != main.head_num:
        reasons.append(
            f"{idx_heads} index heads per rank != {main.head_num} KV heads per rank (msa_sgl has one index head per group)"
        )

    kinds, modes_reason = served_kinds()
    workspace_bytes = prefill_workspace_bytes()
    stock_kinds: Dict[str, str] = {}
    if modes_reason:
        for k in KINDS:
            if k not in kinds:
                stock_kinds[k] = modes_reason
    if "decode" in kinds and getattr(backend, "use_dense_sparse_decode", False):
        kinds.discard("decode")
        stock_kinds["decode"] = "SGLANG_OPT_USE_MINIMAX_DENSE_SPARSE_DECODE"
    if "verify" in kinds:
        try:
            from sglang.srt.layers.attention.minimax_sparse_ops.indexer_cp import draft_is_chain_layout
            from sglang.srt.runtime_context import get_spec

            spec = get_spec()
            chain = draft_is_chain_layout(spec.speculative_algorithm, spec.speculative_eagle_topk)
        except Exception:  # noqa: BLE001 - no spec context: no speculative decoding
            chain = True
        if not chain:
            kinds.discard("verify")
            stock_kinds["verify"] = "tree drafts (speculative top-k > 1 or n-gram): msa_sgl's verify is causal"

    stock_layers: Dict[int, str] = {}
    served = []
    for lid in backend.sparse_layer_ids:
        if lid not in getattr(pool, "sparse_layer_id_mapping", {lid: 0}):
            continue  # another pipeline stage's layer
        if lid in backend.disable_value_layer_ids:
            served.append(lid)
        else:
            stock_layers[lid] = "index-value path (idx_o), which msa_sgl does not compute"
    if not served and not reasons:
        reasons.append("no sparse layer without the index-value path")
    if not kinds and not reasons:
        reasons.append(f"no forward kind left ({'; '.join(f'{k}: {v}' for k, v in stock_kinds.items())})")
    active = not reasons

    # decode / verify through one MSADecodeWrapper (at most MAX_Q_LEN query tokens per request)
    from msa_sgl.decode import MAX_Q_LEN

    num_q_heads = int(getattr(runner.model_config, "num_attention_heads", 0) or 0) // max(1, tp)
    wrapper_kinds: List[str] = []
    direct: Dict[str, str] = {}
    step_q_len = 1
    heads_ok = num_q_heads >= 1 and num_q_heads % main.head_num == 0
    for kind in ("decode", "verify"):
        if not active or kind not in kinds:
            continue
        if not heads_ok:
            direct[kind] = f"{num_q_heads} query heads per rank, not a multiple of {main.head_num} KV heads"
            continue
        if kind == "verify":
            ndt = int(getattr(backend, "speculative_num_draft_tokens", 0) or 0)
            if ndt < 1:
                continue  # no speculative decoding: no verify batch comes
            if ndt > MAX_Q_LEN:
                direct[kind] = f"{ndt} draft tokens per request > MSADecodeWrapper's {MAX_Q_LEN}"
                continue
            step_q_len = max(step_q_len, ndt)
        wrapper_kinds.append(kind)
    return ServingPlan(
        active=active,
        layers=tuple(served) if active else (),
        stock_layers=stock_layers,
        kinds=tuple(k for k in KINDS if k in kinds) if active else (),
        stock_kinds=stock_kinds,
        reasons=reasons,
        config=config,
        device=device,
        wrapper_kinds=tuple(wrapper_kinds),
        direct_step_kinds=direct,
        step_q_len=step_q_len,
        num_q_heads=num_q_heads,
        workspace_bytes=workspace_bytes,
    )


def _max_running_requests(runner) -> int:
    """Most requests one batch of this runner can hold: the largest of what the runner knows
    (its max_running_requests, the server argument, the req_to_token pool's request rows)."""
    found = []
    for get in (
        lambda: runner.max_running_requests,
        lambda: runner.server_args.max_running_requests,
        lambda: runner.req_to_token_pool.size,
    ):
        try:
            v = get()
        except Exception:  # noqa: BLE001 - a runner without it
            continue
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            found.append(v)
    if not found:  # every request has a req_to_token row (row 0 is SGLang's padding row)
        found.append(max(1, int(runner.req_to_token_pool.req_to_token.shape[0]) - 1))
    return max(found)


def _capturing() -> bool:
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_current_stream_capturing())


@dataclass
class BatchMeta:
    """msa_sgl's metadata of one forward batch (device tensors) and its host sizes."""

    kind: str
    owner: object  # the ForwardBatch (extend) it was built from
    batch: int
    num_tokens: int  # query rows msa_sgl computes (the rest are DP padding)
    q_per_req: int  # decode 1, verify: draft tokens; extend: 0 (varlen)
    page_table: object
    cu_seqlens_q: object
    seq_lens_k: object
    wrapper: object = None  # the MSADecodeWrapper planned for this batch (None: msa_attention)
    prefill: dict = field(default_factory=dict)  # extend: layer shapes -> MSAPrefillWrapper planned for this batch


def _stock_base(cls: type) -> type:
    for c in cls.__mro__:
        if not getattr(c, "_msa_sgl_backend", False):
            return c
    raise TypeError(f"{cls!r} has no SGLang base")


def backend_class() -> type:
    """``MsaSglSparseAttnBackend``: SGLang's ``MiniMaxSparseAttnBackend`` with msa_sgl serving
    the sparse layers it supports (built on first call; imports SGLang)."""
    import torch

    from sglang.srt.layers.attention import minimax_sparse_backend as msb
    from sglang.srt.model_executor.forward_batch_info import ForwardMode

    base = _stock_base(msb.MiniMaxSparseAttnBackend)
    cached = _CLASS_CACHE.get(id(base))
    if cached is not None:
        return cached

    import msa_sgl

    class MsaSglSparseAttnBackend(base):
        """MiniMax-M3 sparse attention through msa_sgl (see msa_sgl/radix_integration.py)."""

        _msa_sgl_backend = True

        def __init__(self, runner):
            super().__init__(runner)
            self.msa_sgl_plan = _plan(self, runner)
            self.msa_sgl_stats: Dict[str, int] = {}
            self._msa_step: Optional[BatchMeta] = None
            self._msa_cg = None
            self._msa_validate = _env_flag(ENV_VALIDATE)
            B = self.block_size_k
            # decode / verify page tables cover every block that starts inside req_to_token,
            # a width fixed for the process (CUDA graphs need fixed shapes)
            self._msa_graph_pages = -(-self.req_to_token.shape[1] // B)
            # decode / verify: one MSADecodeWrapper, built outside graph capture when first
            # needed (init_cuda_graph_state, or the first eager step batch), for
            # max(CUDA-graph max_bs, most running requests) requests
            self._msa_wrapper = None
            self._msa_step_cu: Dict[int, object] = {}  # q per request -> int32 [max_batch + 1] offsets
            self._msa_max_reqs = _max_running_requests(runner)
            self._msa_cg_max_bs = 0
            self._msa_retired: List[tuple] = []  # wrappers replaced by a larger one (never freed)
            level = logging.INFO if self.msa_sgl_plan.active else logging.WARNING
            _log_once(level, self.msa_sgl_plan.summary(len(self.sparse_layer_ids)))

        # -- bookkeeping ---------------------------------------------------------------------
        def _msa_count(self, key: str) -> None:
            self.msa_sgl_stats[key] = self.msa_sgl_stats.get(key, 0) + 1

        @staticmethod
        def _msa_kind(mode) -> Optional[str]:
            if mode.is_target_verify():
                return "verify"
            if mode.is_decode_or_idle():
                return "decode"
            if mode == ForwardMode.EXTEND or mode == ForwardMode.MIXED:
                return "extend"
            return None  # draft extend, split prefill, dLLM: SGLang's path

        def _msa_stock_needed(self, kind: Optional[str]) -> bool:
            plan = self.msa_sgl_plan
            if not plan.active or kind is None or kind not in plan.kinds:
                return True
            return bool(plan.stock_layers)

        # -- metadata --------------------------------------------------------------------------
        def init_forward_metadata_out_graph(self, forward_batch, in_capture: bool = False):
            self._msa_step = None
            kind = self._msa_kind(forward_batch.forward_mode)
            if self._msa_stock_needed(kind):
                super().init_forward_metadata_out_graph(forward_batch, in_capture)

        def init_cuda_graph_state(self, max_bs: int, max_num_tokens: int):
            super().init_cuda_graph_state(max_bs, max_num_tokens)
            plan = self.msa_sgl_plan
            if not plan.active:
                return
            self._msa_cg_max_bs = max(self._msa_cg_max_bs, int(max_bs))
            if plan.wrapper_kinds:
                # built here, before any capture: its buffers are initialised by eager ops
                w = self._msa_wrapper
                if w is None or w.max_batch < self._msa_cg_max_bs:
                    if w is not None:  # graphs captured on it keep its buffers' addresses: keep them alive
                        self._msa_retired.append((w, self._msa_step_cu))
                    self._msa_wrapper = None
                    self._msa_build_wrapper()
            if not any(k in plan.direct_step_kinds for k in ("decode", "verify")):
                return  # every step kind reads the wrapper's own persistent buffers
            # the step kinds msa_attention serves read these persistent buffers in the graphs
            dev = self.req_to_token.device
            ndt = int(self.speculative_num_draft_tokens or 1)
            ar = torch.arange(max_bs + 1, dtype=torch.int32, device=dev)
            self._msa_cg = dict(
                max_bs=int(max_bs),
                page_table=torch.zeros(max_bs, self._msa_graph_pages, dtype=torch.int32, device=dev),
                seq_lens_k=torch.ones(max_bs, dtype=torch.int32, device=dev),
                cu_decode=ar.clone(),
                cu_verify=(ar * ndt).to(torch.int32),
            )

        # -- the decode wrapper ----------------------------------------------------------------
        def _msa_build_wrapper(self):
            plan = self.msa_sgl_plan
            main = self.kv_pool.main_pool
            max_batch = max(self._msa_max_reqs, self._msa_cg_max_bs, 1)
            w = msa_sgl.MSADecodeWrapper(
                plan.config, num_q_heads=plan.num_q_heads, num_kv_heads=main.head_num, head_dim=main.head_dim,
                index_dim=self.idx_head_dim, max_batch=max_batch, max_pages=self._msa_graph_pages,
                max_q_len=plan.step_q_len, dtype=main.dtype, device=self.req_to_token.device,
            )
            # constant query offsets of the step kinds, sliced per batch (never written again)
            ar = torch.arange(max_batch + 1, dtype=torch.int32, device=w.device)
            self._msa_step_cu = {q: (ar * q).to(torch.int32) for q in {1, plan.step_q_len}}
            self._msa_wrapper = w
            _log_once(
                logging.INFO,
                f"{LOG_PREFIX} MSADecodeWrapper for {', '.join(plan.wrapper_kinds)} on {w.device}: up to {max_batch} "
                f"requests x {plan.step_q_len} query tokens, {self._msa_graph_pages} pages each, "
                f"{w.workspace_bytes() / 2**20:.1f} MiB",
            )
            return w

        def _msa_wrapper_for(self, kind: str, bs: int):
            """The wrapper that serves this step batch, or None (msa_attention serves it)."""
            if kind not in self.msa_sgl_plan.wrapper_kinds or bs == 0:
                return None
            w = self._msa_wrapper
            if w is None:
                if _capturing():  # its buffers must be initialised outside a graph
                    _log_once(
                        logging.WARNING,
                        f"{LOG_PREFIX} MSADecodeWrapper not built before CUDA-graph capture (no init_cuda_graph_state): "
                        "msa_sgl.msa_attention serves the captured step batches",
                    )
                    return None
                w = self._msa_build_wrapper()
            if bs > w.max_batch:
                _log_once(
                    logging.WARNING,
                    f"{LOG_PREFIX} step batches of more than {w.max_batch} requests (the MSADecodeWrapper's max_batch) "
                    "run msa_sgl.msa_attention (correct, slower)",
                )
                return None
            return w

        def init_forward_metadata_in_graph(self, forward_batch):
            super().init_forward_metadata_in_graph(forward_batch)
            kind = self._msa_kind(forward_batch.forward_mode)
            if kind in ("decode", "verify") and kind in self.msa_sgl_plan.kinds and self.msa_sgl_plan.active:
                self._msa_step = self._msa_step_meta(forward_batch, kind)

        def _msa_step_meta(self, fb, kind: str) -> BatchMeta:
            """Decode / verify metadata: device ops only, fixed shapes (recorded in CUDA graphs)."""
            bs = int(fb.seq_lens.shape[0])
            if kind == "verify":
                ndt = self.speculative_num_draft_tokens
                if not ndt:
                    raise ValueError(
                        "speculative_num_draft_tokens: expected the draft tokens per request for TARGET_VERIFY, got "
                        f"{ndt!r}"
                    )
                q_per = int(ndt)
            else:
                q_per = 1
            if fb.req_pool_indices.shape[0] != bs:
                raise ValueError(
                    f"req_pool_indices: expected {bs} entries (seq_lens.shape[0]), got {fb.req_pool_indices.shape[0]}"
                )
            table = msa_sgl.page_table_from_req_to_token(
                self.req_to_token, fb.req_pool_indices, self.block_size_k, self._msa_graph_pages
            )
            # SGLang's TARGET_VERIFY seq_lens are the committed lengths; the drafts come after them
            lens = fb.seq_lens.to(torch.int32) if q_per == 1 else (fb.seq_lens + q_per).to(torch.int32)
            w = self._msa_wrapper_for(kind, bs)
            if w is not None:
                # plan once per batch: copies into the wrapper's own buffers and derives the
                # step's metadata there, device ops only (graph-safe); every layer's run() reads them
                cu = self._msa_step_cu[q_per][: bs + 1]
                w.plan(table, cu, lens, total_q=bs * q_per)
                self._msa_count(f"wrapper_plan_{kind}")
                return BatchMeta(kind, fb, bs, bs * q_per, q_per, table, cu, lens, wrapper=w)
            cg = self._msa_cg
            if cg is not None and bs <= cg["max_bs"]:
                cg["page_table"][:bs].copy_(table)
                cg["seq_lens_k"][:bs].copy_(lens)
                table, lens = cg["page_table"][:bs], cg["seq_lens_k"][:bs]
                cu = (cg["cu_verify"] if kind == "verify" else cg["cu_decode"])[: bs + 1]
            else:
                cu = torch.arange(bs + 1, dtype=torch.int32, device=lens.device) * q_per
            return BatchMeta(kind, fb, bs, bs * q_per, q_per, table, cu, lens)

        def _msa_extend_meta(self, fb) -> BatchMeta:
            """Extend metadata, varlen (host sizes from SGLang's *_cpu fields)."""
            bs = int(fb.seq_lens.shape[0])
            ext_cpu = getattr(fb, "extend_seq_lens_cpu", None)
            if fb.extend_seq_lens is None or ext_cpu is None:
                raise ValueError(
                    "forward_batch.extend_seq_lens(_cpu): expected the new tokens per request of an EXTEND batch, got None"
                )
            if len(ext_cpu) != bs or fb.extend_seq_lens.shape[0] != bs:
                raise ValueError(
                    f"forward_batch.extend_seq_lens: expected {bs} entries (seq_lens.shape[0]), got "
                    f"{fb.extend_seq_lens.shape[0]} (host {len(ext_cpu)})"
                )
            seq_cpu = getattr(fb, "seq_lens_cpu", None)  # host copy: no device read
            width = self.req_to_token.shape[1]
            if seq_cpu is not None and bs > 0:
                longest = int(seq_cpu.max())
                if longest > width:
                    raise ValueError(
                        f"forward_batch.seq_lens_cpu: expected lengths within req_to_token's width {width}, got {longest}"
                    )
                max_pages = max(1, -(-longest // self.block_size_k))
            else:  # no host copy (gpu-only batches): every block of the map
                max_pages = self._msa_graph_pages
            table = msa_sgl.page_table_from_req_to_token(
                self.req_to_token, fb.req_pool_indices, self.block_size_k, max_pages
            )
            cu = torch.zeros(bs + 1, dtype=torch.int32, device=fb.seq_lens.device)
            cu[1:] = torch.cumsum(fb.extend_seq_lens, 0, dtype=torch.int32)
            return BatchMeta("extend", fb, bs, int(sum(ext_cpu)), 0, table, cu, fb.seq_lens.to(torch.int32))

        def _msa_meta(self, fb, kind: str, num_rows: int) -> BatchMeta:
            m = self._msa_step
            if kind == "extend":
                if m is None or m.kind != "extend" or m.owner is not fb:
                    m = self._msa_extend_meta(fb)
                    self._msa_step = m
                    self._msa_check(m)
            else:
                bs = int(fb.seq_lens.shape[0])
                if m is None or m.kind != kind or m.batch != bs:
                    # no in-graph step for this batch (eager callers that skip it): build it here
                    m = self._msa_step_meta(fb, kind)
                    self._msa_step = m
                self._msa_check(m)
                if num_rows != m.num_tokens:
                    raise ValueError(
                        f"q: expected {m.num_tokens} rows for a {kind} batch of {bs} requests x {m.q_per_req}, got {num_rows}"
                    )
            return m

        def _msa_check(self, m: BatchMeta) -> None:
            if self._msa_validate:  # MSA_SGL_VALIDATE=1: reads device values (debugging)
                k_rows = self.kv_pool.get_index_k_buffer(self.msa_sgl_plan.layers[0]).shape[0]
                msa_sgl.validate_metadata(
                    m.page_table, m.cu_seqlens_q, m.seq_lens_k, total_q=m.num_tokens,
                    num_pages=k_rows // self.block_size_k, block_size=self.block_size_k,
                )

        # -- per-page data -------------------------------------------------------------------
        def _msa_write_page_data(self, layer_id: int, idx_k, fb) -> None:
            store = getattr(self.kv_pool, "msa_sgl_page_data", None)
            if store is not None and store.index_of(layer_id) is not None:
                store.write(layer_id, idx_k, fb.out_cache_loc)

        # -- forward ---------------------------------------------------------------------------
        def forward_extend(self, q, k, v, layer, forward_batch, save_kv_cache=True, *, idx_q, idx_k, idx_v):
            kind = self._msa_kind(forward_batch.forward_mode)
            if kind is None:
                _log_once(
                    logging.WARNING,
                    f"{LOG_PREFIX} forward mode {forward_batch.forward_mode.name}: SGLang's own sparse path serves it",
                )
            if kind is None or not self.msa_sgl_plan.serves(layer.layer_id, kind):
                self._msa_count(f"stock_{kind or forward_batch.forward_mode.name.lower()}")
                out = super().forward_extend(
                    q, k, v, layer, forward_batch, save_kv_cache, idx_q=idx_q, idx_k=idx_k, idx_v=idx_v
                )
                self._msa_write_page_data(layer.layer_id, idx_k, forward_batch)
                return out
            return self._msa_forward(q, k, v, layer, forward_batch, kind, idx_q, idx_k, idx_v)

        def forward_decode(self, q, k, v, layer, forward_batch, save_kv_cache=True, *, idx_q, idx_k, idx_v, **kwargs):
            if kwargs or not self.msa_sgl_plan.serves(layer.layer_id, "decode"):
                self._msa_count("stock_decode")
                out = super().forward_decode(
                    q, k, v, layer, forward_batch, save_kv_cache, idx_q=idx_q, idx_k=idx_k, idx_v=idx_v, **kwargs
                )
                self._msa_write_page_data(layer.layer_id, idx_k, forward_batch)
                return out
            return self._msa_forward(q, k, v, layer, forward_batch, "decode", idx_q, idx_k, idx_v)

        def _msa_prefill_for(self, meta: BatchMeta, q, idx_q):
            """The extend batch's MSAPrefillWrapper for this layer's shapes, planned at the first
            sparse layer of those shapes (M3: one for all its layers). Index keys in q's dtype
            (index_fp8=False): the pool's index-key buffer, as this backend reads it."""
            shapes = (q.shape[1], q.shape[2], idx_q.shape[1], idx_q.shape[2], q.dtype, q.device)
            w = meta.prefill.get(shapes)
            if w is None:
                w = msa_sgl.MSAPrefillWrapper(
                    self.msa_sgl_plan.config, num_q_heads=shapes[0], head_dim=shapes[1], num_kv_heads=shapes[2],
                    index_dim=shapes[3], dtype=shapes[4], device=shapes[5], index_fp8=False,
                    workspace_bytes=self.msa_sgl_plan.workspace_bytes,
                )
                w.plan(meta.page_table, meta.cu_seqlens_q, meta.seq_lens_k, meta.num_tokens)
                meta.prefill[shapes] = w
                self._msa_count("prefill_plan")
            return w

        def _msa_forward(self, q, k, v, layer, fb, kind, idx_q, idx_k, idx_v):
            lid = layer.layer_id
            for name in ("q_scale_float", "k_scale_float", "v_scale_float", "idx_q_scale_float", "idx_k_scale_float"):
                s = getattr(layer, name, None)
                if s is not None and s != 1.0:
                    raise ValueError(
                        f"layer.{name}: expected None or 1.0 (msa_sgl reads unscaled fp16/bf16 caches) for layer {lid}, got {s}"
                    )
            if idx_v is not None:
                raise ValueError(f"idx_v: expected None for layer {lid} (no index-value path), got a tensor")
            B = self.block_size_k
            hkv = self.kv_pool.main_pool.head_num
            if q.dim() != 3 or idx_q.dim() != 3 or idx_q.shape[1] != hkv:
                raise ValueError(
                    f"q, idx_q: expected [T, Hq, D] and [T, {hkv}, d_idx] (one index head per KV head), got "
                    f"{tuple(q.shape)} and {tuple(idx_q.shape)}"
                )
            meta = self._msa_meta(fb, kind, q.shape[0])
            n_loc = fb.out_cache_loc.shape[0]
            for name, x in (("k", k), ("v", v), ("idx_k", idx_k)):
                if x.shape[0] != n_loc:
                    raise ValueError(f"{name}: expected {n_loc} rows (out_cache_loc.shape[0]), got {x.shape[0]}")
            if not self._is_sparse_kv_cached_by_fusion(fb, lid):
                self.kv_pool.set_fused_kv_index_buffer(
                    layer, fb.out_cache_loc, k, v, idx_k, None,
                    layer.k_scale_float, layer.v_scale_float, layer.idx_k_scale_float, layer.idx_v_scale_float,
                )
            self._msa_write_page_data(lid, idx_k, fb)
            k_buf, v_buf = self.kv_pool.get_kv_buffer(lid)
            idx_buf = self.kv_pool.get_index_k_buffer(lid)
            rows = meta.num_tokens
            total = q.shape[0]
            if rows > total:
                raise ValueError(f"q: expected at least {rows} rows (the batch's new tokens), got {total}")
            q_in, iq_in = (q, idx_q) if rows == total else (q[:rows], idx_q[:rows])  # DP-attention padding
            k_view, v_view = msa_sgl.paged_view(k_buf, B), msa_sgl.paged_view(v_buf, B)
            idx_view = msa_sgl.paged_view(idx_buf.view(idx_buf.shape[0], -1), B)
            if meta.wrapper is not None:
                # decode / verify, planned once for the batch: kernels only, into this layer's
                # own tensor (the wrapper's out buffer would be overwritten by the next layer)
                out = meta.wrapper.run(q_in, k_view, v_view, iq_in, idx_view,
                                       out=q.new_empty(rows, q.shape[1], q.shape[2]))
                self._msa_count(f"wrapper_{kind}")
            elif kind == "extend":
                # planned once for the batch (row requests, index tile map and launch shapes),
                # the layer's kernels only: msa_attention's results with 0.1-0.56 ms less host time a
                # layer where the index branch runs (H100, benchmarks/NOTES.md v22b)
                out = self._msa_prefill_for(meta, q_in, iq_in).run(q_in, k_view, v_view, iq_in, idx_view)
            else:
                out = msa_sgl.msa_attention(
                    q_in, k_view, v_view, iq_in, idx_view, meta.page_table, meta.cu_seqlens_q, meta.seq_lens_k,
                    self.msa_sgl_plan.config, workspace_bytes=self.msa_sgl_plan.workspace_bytes,
                )
            self._msa_count(f"msa_{kind}")
            out = out.reshape(rows, -1)
            if rows < total:
                out = torch.cat([out, out.new_zeros(total - rows, out.shape[1])], dim=0)
            return None, out

    MsaSglSparseAttnBackend.__qualname__ = "MsaSglSparseAttnBackend"
    MsaSglSparseAttnBackend.__module__ = __name__
    _CLASS_CACHE[id(base)] = MsaSglSparseAttnBackend
    return MsaSglSparseAttnBackend
