"""all-MiniLM-L6-v2 under the activation-quantized configs (issue 11), on the CPU: each config's
sentence embeddings against the float32 model's, compared with the weight-only config of the same
weight bits measured in the same session on the same batch (tests/test_models.py has the model,
the batch and the weight-only floors; its fixture and names are imported from there):

    int8 activations x int8 weights      vs  Int8WeightOnlyConfig()
    fp8 x fp8 (tensor, row, 1x128 block)  vs  Float8WeightOnlyConfig()
    W4A8 (int8 or fp8 activations)        vs  Int4WeightOnlyConfig(group_size=128)

Quantizing the activations too must cost no more than MARGIN of cosine over the weight-only
config (UNMET says where, and why, a scheme does not meet it). Each weight-only baseline is measured
once (module fixture) and each case asserts its own floor too (the weight-only floor of
tests/test_models.py minus the margin), so a regression of the weight-only path cannot hide one
of the activation path.

Eager, bfloat16 (the dtype these configs serve), not compiled: on the CPU a compiled model runs
the same op, bit for bit (tests/test_activation_configs.py checks that per config), and each
compile would add ~10 s. ~5-10 s per config in the interpreter; about a minute for the file.
MiniLM's in_features are 384 and 1536, both multiples of 128: the 1x128 / 128x128 block-scaled
fp8 config and the W4A8 groups of 128 take every linear, and the report is checked to say so.
"""
from __future__ import annotations

import copy

import pytest
import torch

import tqk
from tests.test_models import MINILM_FLOORS, MINILM_LINEARS, minilm_reference  # noqa: F401 (a fixture)

DT = torch.bfloat16
PB = tqk.PerBlock
# name: (activation config, name of the weight-only config with the same weight bits in MINILM_FLOORS)
CASES = {
    "int8-row": (tqk.Int8DynamicActivationInt8WeightConfig(), "int8-row"),
    "fp8-row": (tqk.Float8DynamicActivationFloat8WeightConfig(granularity=tqk.PerRow()), "fp8-row"),
    "fp8-tensor": (tqk.Float8DynamicActivationFloat8WeightConfig(), "fp8-row"),
    "fp8-block": (tqk.Float8DynamicActivationFloat8WeightConfig(granularity=[PB((1, 128)), PB((128, 128))]),
                  "fp8-row"),
    "w4a8-int8": (tqk.Int8DynamicActivationIntxWeightConfig(), "int4-g128"),
    "w4a8-fp8": (tqk.Float8DynamicActivationInt4WeightConfig(), "int4-g128"),
}
MARGIN = 0.002
# Not met (issue 11's floor), so a strict xfail at that floor rather than a looser margin: int8
# per-token activations cost more than 0.002 on this model: measured min cosines 0.99701 (bf16) and
# 0.99649 (fp32) against 0.9995 / 0.99963 weight-only. It is the scheme, not tqk's kernel: the same
# scheme simulated in float32 torch (round(x / (rowmax / 127)) on activations and weights, F.linear)
# gives 0.99626, and per-token int8 on the value projections alone (their input is a LayerNorm
# output with outlier channels) costs 0.0023 of it. int8 per-tensor activations (0.947) are left
# out for the same reason, far worse.
UNMET = {"int8-row": "int8 per-token activations: min cosine 0.99701 against int8 weight-only 0.99950 - 0.002"}


def _cosine(model, batch, ref, config) -> tuple[float, list[float], object]:
    """(min cosine over the batch, each sentence's cosine, report) of a bf16 copy quantized with config."""
    from tqk.bench import minilm

    q = copy.deepcopy(model).to(DT)
    report = tqk.quantize_(q, config)
    emb = minilm.embed(q, batch)
    assert emb.shape == ref.shape and bool(torch.isfinite(emb).all())
    cos = minilm.cosine_rows(ref, emb)
    return float(cos.min()), [round(c, 5) for c in cos.tolist()], report


@pytest.fixture(scope="module")
def weight_only_cosine(minilm_reference):
    """name in MINILM_FLOORS -> the weight-only config's min cosine, measured once per module."""
    model, batch, ref = minilm_reference
    cache = {}

    def get(name):
        if name not in cache:
            cos, _, report = _cosine(model, batch, ref, MINILM_FLOORS[name][0])
            assert len(report.quantized) == MINILM_LINEARS and report.skipped == {}, report
            cache[name] = cos
        return cache[name]
    return get


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=UNMET[n]))
                                  if n in UNMET else n for n in CASES])
def test_minilm_activation_config_within_margin_of_weight_only(minilm_reference, weight_only_cosine, name):
    model, batch, ref = minilm_reference
    config, wo_name = CASES[name]
    margin = MARGIN
    k_multiple = config.layout().k_multiple()
    linears = {fqn: m.in_features for fqn, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    fits = {fqn for fqn, k in linears.items() if k % k_multiple == 0}
    assert len(linears) == MINILM_LINEARS and fits == set(linears)  # 384 and 1536: every K a multiple of 128

    cos, per_sentence, report = _cosine(model, batch, ref, config)
    assert sorted(report.quantized) == sorted(fits) and report.skipped == {}, report
    baseline = weight_only_cosine(wo_name)
    wo_floor = MINILM_FLOORS[wo_name][1]
    msg = (f"{name}: min cosine {cos:.5f} ({per_sentence}); weight-only {wo_name} {baseline:.5f}, "
           f"margin {margin}, weight-only floor {wo_floor}")
    print(msg)
    assert cos >= baseline - margin, msg
    assert cos >= wo_floor - margin, msg
