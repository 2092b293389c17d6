"""Every implementation against the stored golden cases (tests/golden/manifest.json)."""

import pytest
import torch

from harness.golden import load_case, load_manifest
from harness.impls import IMPLEMENTATIONS, KERNEL_DTYPES
from harness.tolerance import check_selection_contract, compare_topk, lse_error, output_error
from msa_sgl import reference

ENTRIES = load_manifest()["cases"]


@pytest.mark.parametrize("impl_name", sorted(IMPLEMENTATIONS))
@pytest.mark.parametrize("entry", ENTRIES, ids=[e["name"] for e in ENTRIES])
def test_golden(entry, impl_name):
    case = load_case(entry)
    impl = IMPLEMENTATIONS[impl_name]
    if impl is not reference and entry["dtypes"]["q"] not in KERNEL_DTYPES:
        pytest.skip(f"{entry['dtypes']['q']} kernels run on the GPU only (Triton's interpreter computes bf16 tl.dot wrongly)")
    a = case.args
    index_args = {k: a[k] for k in ("q_idx", "k_idx_cache", "page_table", "cu_seqlens_q", "seq_lens_k", "config")}
    topk_idx = impl.index_topk(**index_args)
    check_selection_contract(topk_idx, a["cu_seqlens_q"], a["seq_lens_k"], case.config)
    if impl is reference:
        assert torch.equal(topk_idx, case.topk_idx), "the reference's selection drifted from the golden file"
    else:
        compare_topk(topk_idx, case.topk_idx, reference.index_scores(**index_args), a["q_idx"], a["k_idx_cache"], case.config)
    out, lse = impl.msa_attention(**a, return_lse=True)
    if torch.equal(topk_idx, case.topk_idx):
        output_error(out, case.out, out.dtype)
        lse_error(lse, case.lse, out.dtype)
    # the main branch on the golden selection, whatever the index branch chose
    attn = {k: a[k] for k in ("q", "k_cache", "v_cache", "page_table", "cu_seqlens_q", "seq_lens_k", "config")}
    out, lse = impl.sparse_attention(**attn, topk_idx=case.topk_idx, return_lse=True)
    output_error(out, case.out, out.dtype)
    lse_error(lse, case.lse, out.dtype)


def test_manifest_describes_payloads():
    assert len(ENTRIES) >= 5
    for entry in ENTRIES:
        case = load_case(entry)  # checks the sha256
        for name, shape in entry["shapes"].items():
            got = case.topk_idx if name == "topk_idx" else case.args[name]
            assert list(got.shape) == shape, (entry["name"], name)
            if name in entry["dtypes"]:
                assert str(got.dtype) == "torch." + entry["dtypes"][name], (entry["name"], name)
        assert torch.isfinite(case.out).all() and not torch.isnan(case.lse).any()
