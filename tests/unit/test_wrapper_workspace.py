"""MSADecodeWrapper sizes its index workspace once, for every (batch, total_q) it may be planned
for: the bound of msa_sgl.ops.index_branch.workspace_bound against plan_index's actual demand,
enumerated (host arithmetic only). The wrapper planned only batch and batch * max_q_len rows
before; values in between could need more (e.g. Hkv 1, 8 requests of up to 7 tokens, 47 rows
on 132 SMs)."""

import pytest
import torch

from msa_sgl import MSAConfig
from msa_sgl.ops import index_branch as ib
from msa_sgl.ops.metadata import num_sms


@pytest.mark.parametrize("mtp_cap", [None, 256], ids=["mtp_cap_default", "mtp_cap_256"])
@pytest.mark.parametrize("fp8", [False, True], ids=["plain_keys", "fp8_keys"])
@pytest.mark.parametrize("sms", [4, 132], ids=["4_sms", "132_sms"])
@pytest.mark.parametrize("hkv", [1, 4, 8])
@pytest.mark.parametrize("max_batch,max_q_len,max_pages", [(8, 7, 64), (12, 16, 8192), (5, 1, 3), (33, 3, 300), (1, 16, 8192),
                                                             (2, 8, 8192)])
def test_workspace_bound_covers_every_plan(monkeypatch, sms, hkv, max_batch, max_q_len, max_pages, fp8, mtp_cap):
    monkeypatch.setattr(ib, "num_sms", lambda device: sms)  # the SM count is all plan_index reads
    if mtp_cap is not None:  # bf16 MTP tiles on wide tables take their own cap (index_branch._MAX_SPLIT_MTP)
        monkeypatch.setattr(ib, "_MAX_SPLIT_MTP", mtp_cap)
    config = MSAConfig(block_size=128, topk=16, num_init_blocks=0, num_local_blocks=1)
    device = torch.device("cpu")
    bound = ib.workspace_bound(max_batch, max_q_len, max_pages, hkv, config, device, fp8=fp8)
    worst = 0
    for b in range(1, max_batch + 1):
        for t in range(0, b * max_q_len + 1):
            p = ib.plan_index(t, b, max_pages, hkv, config, device, fp8=fp8)
            worst = max(worst, t * hkv * p.n_split * p.kf)
    assert worst <= bound, (worst, bound)
    assert bound <= 4 * max(worst, 1) + (3 if fp8 else 2) * sms * hkv * 16 * max_batch, "the bound should not be far above the need"


def test_num_sms_of_the_interpreter():
    assert num_sms(torch.device("cpu")) == 4
