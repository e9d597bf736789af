"""A QuantizedLinear's one buffer (tqk/layouts/storage.py): every tensor of every layout comes back bit for bit,
at a 16-byte boundary, the weight-only kernels' view of it (stored_views) is the same, and a float cast of the
model casts what follows the model and nothing else. No kernel runs here."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tqk
from tqk import testing as T
from tqk.layouts.storage import ALIGN_WORDS, Storage, stored_views

LAYOUTS = T.all_layout_examples() + T.all_layout_examples("scaled")
NAMES = ("packed", "scales", "zeros", "table")


def _bits(t: torch.Tensor) -> torch.Tensor:
    return torch.empty(t.numel(), dtype=t.dtype).copy_(t.reshape(-1)).view(torch.uint8)  # any strides (stride-0 scales)


def _layer(layout, n: int, k: int, dtype, seed: int) -> tqk.QuantizedLinear:
    torch.manual_seed(seed)
    w = torch.randn(n, k, dtype=dtype)
    if layout.family == "weight_only":
        qw = T.quantize_for_layout(w, layout)
    else:
        qw = tqk.QuantizedLinearWeight(*layout.quantize(w), layout, (n, k), dtype)
    return tqk.QuantizedLinear(qw), qw


@pytest.mark.parametrize("layout", LAYOUTS, ids=repr)
@settings(max_examples=4)
@given(n=st.integers(1, 40), blocks=st.integers(1, 3), dtype=st.sampled_from([torch.bfloat16, torch.float32]),
       seed=st.integers(0, 2**16))
def test_buffer_holds_every_tensor_bit_for_bit(layout, n, blocks, dtype, seed):
    k = blocks * math.lcm(layout.k_multiple(), 128)
    layer, qw = _layer(layout, n, k, dtype, seed)
    assert layer.data.dtype == torch.int32 and layer.data.dim() == 1
    for name in NAMES:
        want, got = getattr(qw, name), getattr(layer, name)
        assert (want is None) == (got is None), name
        if want is not None:
            assert got.dtype == want.dtype and got.shape == want.shape, name
            assert torch.equal(_bits(got), _bits(want)), f"{name} differs from the tensor it stores"
    words = 0
    for name, seg in layer.storage.segments:
        assert seg.offset % ALIGN_WORDS == 0 and seg.offset >= words, f"{name} at word {seg.offset}"
        words = seg.offset + seg.words
    assert layer.data.numel() - words < ALIGN_WORDS  # no more than the last segment's padding
    if layout.family == "weight_only":  # what the kernels and the op's backward read, from kernel_args alone
        views = stored_views(layer.data, layer.storage.kernel_args(), layout.weight_format(), n, dtype)
        for name, view in zip(NAMES, views):
            want = getattr(qw, name)
            assert (view is None) == (want is None) and (view is None or torch.equal(_bits(view), _bits(want))), name


@pytest.mark.parametrize("layout", LAYOUTS, ids=repr)
def test_float_cast_casts_what_follows_the_model(layout):
    """.half(): float scales, zero points and table become float16, codes and byte scales keep their bits,
    NVFP4's float32 tensor scale stays float32 (a rounding there would move every output)."""
    layer, qw = _layer(layout, 8, math.lcm(layout.k_multiple(), 128), torch.bfloat16, 0)
    layer.half()
    assert layer.weight_dtype == torch.float16 and layer.weight.dtype == torch.float16
    for name in NAMES:
        want, got = getattr(qw, name), getattr(layer, name)
        if want is None:
            continue
        if want.is_floating_point() and not (name == "zeros" and not qw.scales.is_floating_point()):
            assert got.dtype == torch.float16 and torch.equal(got, want.half()), name
        else:
            assert got.dtype == want.dtype and torch.equal(_bits(got), _bits(want)), name


def test_pack_rejects_nothing_it_cannot_place():
    """Segments of odd byte counts (uint8 scales of 5 rows, a 3-entry table) still land on 16-byte boundaries."""
    tensors = dict(packed=torch.arange(6, dtype=torch.int32).view(2, 3), scales=torch.arange(5, dtype=torch.uint8),
                   table=torch.tensor([1.5, -2.0, 3.0], dtype=torch.bfloat16))
    storage, data = Storage.pack(tensors, {"table": True})
    assert [seg.offset for _, seg in storage.segments] == [0, 8, 12]
    for name, t in tensors.items():
        assert torch.equal(storage.get(data, name), t)
    assert storage.get(data, "zeros") is None
