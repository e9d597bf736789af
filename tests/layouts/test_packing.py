"""tqk/layouts/packing.py for every width 1..8: pack and unpack are inverses bit for bit, the words
follow the documented order (tqk.testing.unpack_reference, written from the docstring), a b-bit
code costs b bits, and the power-of-two widths keep the words they had before dense packing
(saved checkpoints of 1, 2, 4 and 8 bits load unchanged)."""
from __future__ import annotations

import hashlib

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tqk
from tqk import testing as T
from tqk.layouts import AffineLayout, FpxLayout
from tqk.layouts.packing import pack_planes, planes_per_block, unpack_planes, words_per_block
from tqk.quant.fpx import check_fpx
from tqk.tensor import QuantizedLinearWeight

WIDTHS = range(1, 9)
SPANS = (16, 32)


def _fpx_formats():
    formats = []
    for e in range(1, 8):
        for m in range(0, 8 - e):
            try:
                check_fpx(e, m)
            except ValueError:
                continue
            formats.append((e, m))
    return formats


@settings(max_examples=max(10, settings.default.max_examples))
@given(bits=st.sampled_from(WIDTHS), span=st.sampled_from(SPANS), n=st.integers(1, 6), k=st.integers(1, 700),
       seed=st.integers(0, 2**31 - 1))
def test_pack_unpack_inverse_in_the_documented_order(bits, span, n, k, seed):
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 1 << bits, (n, k), generator=g, dtype=torch.int32).to(torch.uint8)
    codes[0, -1] = (1 << bits) - 1  # a top bit set somewhere
    packed = pack_planes(codes, bits, span)
    block = planes_per_block(bits) * span
    assert packed.dtype == torch.int32 and packed.shape == (n, -(-k // block) * words_per_block(bits, span))
    assert torch.equal(unpack_planes(packed, bits, span, k), codes)
    assert torch.equal(T.unpack_reference(packed, bits, span, k), codes)


@settings(max_examples=max(10, settings.default.max_examples))
@given(bits=st.sampled_from(WIDTHS), span=st.sampled_from(SPANS), blocks=st.integers(1, 3),
       seed=st.integers(0, 2**31 - 1))
def test_every_bit_of_a_block_is_a_code_bit(bits, span, blocks, seed):
    """Random words of whole blocks unpack and pack back to the same words: no bit is padding, so a
    block of K codes is exactly K * bits bits."""
    k = blocks * planes_per_block(bits) * span
    g = torch.Generator().manual_seed(seed)
    words = torch.randint(-2**31, 2**31 - 1, (3, blocks * words_per_block(bits, span)), generator=g,
                          dtype=torch.int64).to(torch.int32)
    codes = unpack_planes(words, bits, span, k)
    assert torch.equal(T.unpack_reference(words, bits, span, k), codes)
    assert torch.equal(pack_planes(codes, bits, span), words)
    assert words.numel() * 32 == codes.numel() * bits


def test_uint3_g128_4096_squared_is_three_bits_a_code():
    """The issue's bound, through the public path: a 4096 x 4096 3-bit g128 weight packs into at most
    4096 * 4096 * 3 / 8 bytes beside its scales and zero points."""
    w = torch.randn(4096, 4096, generator=torch.Generator().manual_seed(0))
    qw = tqk.quantize_weight(w, tqk.UIntxWeightOnlyConfig(bit_width=3, group_size=128))
    side = qw.scales.numel() * qw.scales.element_size() + qw.zeros.numel() * qw.zeros.element_size()
    assert qw.packed_nbytes <= 4096 * 4096 * 3 // 8 + side
    assert qw.packed.numel() * 4 == 4096 * 4096 * 3 // 8


@pytest.mark.parametrize("layout", [AffineLayout(128, b) for b in WIDTHS] + [AffineLayout(0, b, symmetric=True)
                                                                            for b in WIDTHS]
                         + [FpxLayout(0, e, m) for e, m in _fpx_formats()] + [FpxLayout(32, 3, 2)], ids=repr)
def test_packed_bytes_are_bits_per_code(layout):
    """Every width (uintx: b bits; fpx: 1 + ebits + mbits): a 4096 x 4096 weight's packed bytes are at most
    4096 * 4096 * b / 8 plus its scales and zeros. The words of a row depend on K alone, so the packed
    rows of 8 rows x 4096 times 4096 / 8 are the 4096 x 4096 weight's."""
    fmt = layout.weight_format()
    n, k = 8, 4096
    packed = layout.pack(torch.zeros(n, k, dtype=torch.uint8))
    groups = layout.n_groups(k)
    scales = torch.ones(groups, n, dtype=torch.bfloat16)
    zeros = torch.zeros(groups, n, dtype=torch.bfloat16) if fmt.zero_mode == "tensor" else None
    qw = QuantizedLinearWeight(packed, scales, zeros, layout, (n, k), torch.bfloat16)
    rows = 4096 // n
    side = rows * (qw.packed_nbytes - packed.numel() * 4)  # scales and zeros of 4096 rows
    assert rows * qw.packed_nbytes <= 4096 * 4096 * fmt.bits // 8 + side
    assert packed.numel() * 4 * 8 == n * k * fmt.bits


def _golden_codes(bits: int) -> torch.Tensor:
    i = torch.arange(7, dtype=torch.int64)[:, None]
    j = torch.arange(600, dtype=torch.int64)[None, :]
    return ((i * 40503 + j * 9973 + (i * j) // 7) % (1 << bits)).to(torch.uint8)


# sha256 of the words (little-endian int32) that tqk packed before dense packing (commit 43e7775)
POWER_OF_TWO_WORDS = {(1, 16): "6bffc7af2bd2e1ed", (1, 32): "644817b03d7c7b6f", (2, 16): "8accc2bf88864263",
                      (2, 32): "eccad4b81db4ee83", (4, 16): "b45a6ebd7b9d3ec1", (4, 32): "0764e3db066740d5",
                      (8, 16): "79a9d2415de30d12", (8, 32): "bdb3d22144273006"}


@pytest.mark.parametrize("bits,span", POWER_OF_TWO_WORDS, ids=lambda v: str(v))
def test_power_of_two_widths_keep_their_words(bits, span):
    words = pack_planes(_golden_codes(bits), bits, span)
    assert hashlib.sha256(words.numpy().astype("<i4").tobytes()).hexdigest()[:16] == POWER_OF_TWO_WORDS[bits, span]


@pytest.mark.parametrize("bits", [3, 5, 6, 7])
def test_dense_widths_refuse_a_span_they_cannot_split(bits):
    with pytest.raises(ValueError, match="span"):
        pack_planes(torch.zeros(1, 64, dtype=torch.uint8), bits, 2)


def test_words_in_the_old_slots_are_refused():
    """A 3-bit weight packed before dense packing (4-bit slots: 16 words per 128 codes, now 12) raises,
    naming the packed shape, instead of being misread: by the op, and by load_state_dict."""
    n, k = 8, 256
    layer = torch.nn.Linear(k, n, bias=False)
    with torch.no_grad():
        tqk.quantize_(layer, tqk.UIntxWeightOnlyConfig(bit_width=3, group_size=128))
    new = layer.weight
    old = QuantizedLinearWeight(torch.zeros(n, k // 128 * 16, dtype=torch.int32), new.scales, new.zeros,
                                new.quant_layout, (n, k), new.dtype)
    with pytest.raises(ValueError, match="packed words"):
        old.linear(torch.randn(1, k))
    with pytest.raises(RuntimeError, match="packed words"):
        layer.load_state_dict({"weight": old}, assign=True)
