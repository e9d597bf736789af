"""Property tests run for EVERY registered layout (LAYOUTS / Layout.examples()): a new layout is
tested here without a new test.

Each test compares against tqk.testing's independent references: the packed format is decoded
from its documented formula (not tqk.layouts.packing.unpack_planes) and dequantized in float64
(not tqk.kernels.reference)."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from tqk import testing as T
from tqk.kernels.tuning import KernelConfig
from tqk.kernels.weight_only import launch_weight_only
from tqk.layouts import LAYOUTS

DEVICE = T.default_device()  # CUDA when present; else CPU through the interpreter
EXAMPLES = T.all_layout_examples()
IDS = [repr(ex) for ex in EXAMPLES]
SEEDS = st.integers(0, 2**31 - 1)
DTYPES = st.sampled_from([torch.bfloat16, torch.float16])
# Kernel launches are the slow part in the interpreter: a few examples per layout and path.
KERNEL = settings(max_examples=max(4, settings.default.max_examples // 2))  # 8 in CI: the interpreter's time


def test_registry_has_examples():
    assert {"AffineLayout", "Float8Layout"} <= set(LAYOUTS)
    for cls in LAYOUTS.values():
        examples = cls.examples()
        assert examples, f"{cls.__name__}.examples() is empty: the shared tests would skip it"
        for ex in examples:
            assert isinstance(ex, cls)
            hash(ex)  # layouts go into compiled graphs as constants


@pytest.mark.parametrize("layout", EXAMPLES, ids=IDS)
@given(n=st.integers(1, 40), k=st.integers(1, 700), seed=SEEDS)
def test_pack_unpack_bit_exact(layout, n, k, seed):
    """k codes a row: k * vector_size input features."""
    fmt = layout.weight_format()
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 1 << fmt.bits, (n, k), generator=g, dtype=torch.int32).to(torch.uint8)
    packed = layout.pack(codes)
    assert packed.dtype == torch.int32
    assert packed.shape == (n, -(-k // fmt.block_codes) * fmt.words_per_block)
    assert packed.shape[1] == fmt.packed_words(k * fmt.vector_size)
    assert fmt.words_per_block * 32 == fmt.block_codes * fmt.bits  # b bits per code, for every width
    assert torch.equal(layout.unpack(packed, k * fmt.vector_size), codes)
    # The bytes follow the documented format (what the kernels read), not just any invertible one.
    assert torch.equal(T.unpack_reference(packed, fmt.bits, fmt.span, k), codes)


@pytest.mark.parametrize("layout", EXAMPLES, ids=IDS)
def test_pack_rejects_codes_that_do_not_fit(layout):
    fmt = layout.weight_format()
    if fmt.bits == 8:
        pytest.skip("every uint8 fits 8 bits")
    codes = torch.zeros(2, 64, dtype=torch.uint8)
    codes[1, 5] = 1 << fmt.bits
    with pytest.raises(ValueError, match="does not fit"):
        layout.pack(codes)


def _weight_for(layout, n, k, dtype, dist, seed):
    if dist == "random_codes":
        return T.random_codes_weight(layout, n, k, dtype, seed)
    return T.quantize_for_layout(T.make_weight((n, k), dtype, dist, seed), layout)


@pytest.mark.parametrize("layout", EXAMPLES, ids=IDS)
@given(n=st.integers(1, 48), groups=st.integers(1, 4), dtype=DTYPES,
       dist=st.sampled_from(T.DISTRIBUTIONS + ("random_codes",)), seed=SEEDS)
def test_dequantize_matches_formula(layout, n, groups, dtype, dist, seed):
    k = (layout.group_size or 37 * layout.k_multiple()) * groups
    qw = _weight_for(layout, n, k, dtype, dist, seed)
    exact = T.dequantize_reference(qw)  # (decode(code) - zero) * scale in float64
    assert torch.isfinite(exact).all()
    # float32 (as tqk computes it): code - zero, then * scale, two float32 roundings at most,
    # each relative to |scale| * (|code| + |zero|) (the subtraction can cancel).
    mag = T._magnitude_matrix(qw)
    u32 = T.unit_roundoff(torch.float32)
    got32 = layout.dequantize(qw.packed, qw.scales, qw.zeros, k, torch.float32, qw.table)
    assert got32.dtype == torch.float32 and got32.shape == (n, k)
    assert bool(((got32.double() - exact).abs() <= 2 * u32 * mag).all())
    # In the model dtype: one more rounding, u relative.
    got = qw.dequantize()
    assert got.dtype == dtype and got.shape == (n, k)
    u = T.unit_roundoff(dtype)
    tol = u * exact.abs() + 3 * u32 * mag + torch.finfo(dtype).smallest_normal * torch.finfo(dtype).eps
    assert bool(((got.double() - exact).abs() <= tol).all())
    assert torch.equal(qw.codes(), T.codes_reference(qw))


def _run_kernel(case, config):
    qw, x = case.weight, case.x
    n, k = qw.shape
    out = launch_weight_only(x, qw.packed, qw.scales, qw.zeros, case.bias, qw.quant_layout.weight_format(), n, k,
                             config, table=qw.table)
    assert out.shape == (x.shape[0], n) and out.dtype == x.dtype
    T.assert_close_to_reference(out, T.reference_linear(x, qw, case.bias), x=x, weight=qw, bias=case.bias,
                                msg=f"{case} {config}")


@pytest.mark.parametrize("layout", EXAMPLES, ids=IDS)
@KERNEL
@given(data=st.data(), config=T.kernel_configs("gemv"))
def test_gemv_kernel_matches_reference(layout, data, config):
    case = data.draw(T.quantized_linear_cases(layout, max_m=4, max_n=200, max_k=300, device=DEVICE), label="case")
    _run_kernel(case, config)


# split 3 at 5 blocks + a ragged one (3 trips, the last partial: a split of a partial trip) and 8 at 8 blocks
# (4 trips, 2 wide ones: more splits than trips); split 2, and each split at the other K, cost CI ~140 s
# for nothing these miss
@pytest.mark.parametrize("split_k", [3, 8], ids=lambda s: f"split_k={s}")
@pytest.mark.parametrize("layout", EXAMPLES, ids=IDS)
def test_gemv_split_k_covers_k_once(layout, split_k):
    """Split-K GEMV: K cut into whole trips (two blocks; or four loaded as one wide tile), with
    odd and even block counts and a ragged last block; every code must be counted exactly once
    and the bias once."""
    fmt = layout.weight_format()
    torch.manual_seed(split_k)
    ragged = getattr(layout, "group_size", 0) or 16 * fmt.vector_size  # a tail shorter than a block, whole groups
    for k in ((5 * fmt.block_k + ragged) if split_k == 3 else 8 * fmt.block_k,):
        w = torch.randn(24, k, dtype=torch.bfloat16, device=DEVICE)
        qw = T.quantize_for_layout(w, layout)
        x = torch.randn(2, k, dtype=torch.bfloat16, device=DEVICE)
        bias = 64 * torch.randn(24, dtype=torch.bfloat16, device=DEVICE)  # a double-counted bias must show
        case = T.LinearCase(x, qw, bias, "normal")
        _run_kernel(case, KernelConfig("gemv", block_n=16, split_k=split_k))
        _run_kernel(case, KernelConfig("gemv", block_n=16, split_k=split_k, trip_blocks=4, wide=True))


@pytest.mark.parametrize("layout", [ex for ex in EXAMPLES if ex.weight_format().zero_mode == "tensor"],
                         ids=[repr(ex) for ex in EXAMPLES if ex.weight_format().zero_mode == "tensor"])
@pytest.mark.parametrize("config", [KernelConfig("gemv", 16, biased=True), KernelConfig("gemv", 16, split_k=2, trip_blocks=1),
                                    KernelConfig("gemv", 16, split_k=2, trip_blocks=1, biased=True)],
                         ids=["trip2-biased", "splitk2-trip1", "splitk2-trip1-biased"])
def test_gemv_zero_rows_under_wide_range_x(layout, config):
    """Rows whose every code equals its zero point (dequantized: exactly 0) against x spanning
    2**-12 .. 2**12: a kernel that carries a bias through a block's float32 sums (gemv_bias) must
    still stay within 16 * u32 * bias * sum |x| |s| there, where the rest of the bound is 0."""
    fmt = layout.weight_format()
    n, k = 24, 2 * max(fmt.block_k, layout.group_size)
    qw = T.random_codes_weight(layout, n, k, torch.bfloat16, seed=7, device=DEVICE)
    z = min(5, (1 << fmt.bits) - 1)
    codes = T.unpack_reference(qw.packed.cpu(), fmt.bits, fmt.span, k)
    codes[n // 2:] = z
    zeros = qw.zeros.clone()
    zeros[:, n // 2:] = z
    qw = type(qw)(layout.pack(codes.to(torch.uint8)).to(DEVICE), qw.scales, zeros, layout, (n, k), torch.bfloat16)
    gen = torch.Generator().manual_seed(1)
    x = (torch.randn(2, k, generator=gen) * torch.exp2(torch.rand(2, k, generator=gen) * 24 - 12))
    x = x.to(torch.bfloat16).to(DEVICE)
    out = launch_weight_only(x, qw.packed, qw.scales, qw.zeros, None, fmt, n, k, config)
    ref = T.reference_linear(x, qw)
    assert bool((ref[:, n // 2:] == 0).all())
    T.assert_close_to_reference(out, ref, x=x, weight=qw, msg=str(config))


def test_gemv_split_k_leaves_its_counters_at_zero():
    """The tile's last split-K program writes the output and sets the tile's counter back to 0:
    after a call every counter is 0 again, and a second call gives the same bits (the partials
    are added in a fixed order, whichever program arrives last)."""
    layout = EXAMPLES[0]
    fmt = layout.weight_format()
    torch.manual_seed(0)
    w = torch.randn(40, 8 * fmt.block_k, dtype=torch.bfloat16, device=DEVICE)
    qw = T.quantize_for_layout(w, layout)
    x = torch.randn(2, w.shape[1], dtype=torch.bfloat16, device=DEVICE)
    config = KernelConfig("gemv", block_n=16, split_k=4)
    counters = torch.zeros(64, dtype=torch.int32, device=DEVICE)

    def run():
        return launch_weight_only(x, qw.packed, qw.scales, qw.zeros, None, fmt, *w.shape, config, counters=counters)

    first = run()
    assert int(counters.count_nonzero()) == 0
    assert torch.equal(run(), first)
    T.assert_close_to_reference(first, T.reference_linear(x, qw), x=x, weight=qw)


GEMM_SPLIT_LAYOUTS = [ex for ex in EXAMPLES if repr(ex) in (
    "AffineLayout(group_size=32, nbits=4, symmetric=False, span=16)",  # a group scale per K block
    "AffineLayout(group_size=0, nbits=8, symmetric=True, span=16)",  # per row: K need not fill a block
    "AffineLayout(group_size=128, nbits=3, symmetric=False, span=16)")]  # dense slices


@pytest.mark.parametrize("config", [KernelConfig("gemm", block_n=16, block_m=16, split_k=3),
                                    KernelConfig("gemm", block_n=32, block_m=32, split_k=4, one_dot=True)],
                         ids=["16x16-split3", "32x32-split4-one-dot"])
@pytest.mark.parametrize("layout", GEMM_SPLIT_LAYOUTS, ids=repr)
def test_gemm_split_k_in_one_launch_leaves_its_counters_at_zero(layout, config):
    """Split-K GEMM: each split stores its partial, the tile's last adds them, writes x's dtype and sets
    the tile's counter back to 0. Odd M, N and K (ragged M and N tiles, a ragged last K block, splits of
    unequal block counts), each called twice on the same counters: a counter left set leaves the second
    call's tiles unwritten, a split dropped or counted twice is off by a block's products, the bias by 64.
    The reference's bound is loose here (the dot rounds the weight to bf16), so the split output is also
    held to the unsplit one's: the same products added in another order, one rounding to bf16 apart."""
    fmt = layout.weight_format()
    torch.manual_seed(config.split_k)
    ragged = layout.group_size or 13  # whole groups; per row, an odd K
    for m, n, k in ((1, 24, 6 * fmt.block_k + ragged), (5, 40, 8 * fmt.block_k), (33, 40, 3 * fmt.block_k + ragged)):
        qw = T.quantize_for_layout(torch.randn(n, k, dtype=torch.bfloat16, device=DEVICE), layout)
        x = torch.randn(m, k, dtype=torch.bfloat16, device=DEVICE)
        bias = 64 * torch.randn(n, dtype=torch.bfloat16, device=DEVICE)
        tiles = -(-m // config.block_m) * -(-n // config.block_n)
        counters = torch.zeros(tiles, dtype=torch.int32, device=DEVICE)  # exactly enough: no buffer of its own

        def run():
            return launch_weight_only(x, qw.packed, qw.scales, qw.zeros, bias, fmt, n, k, config, counters=counters)

        first = run()
        assert first.dtype == x.dtype and int(counters.count_nonzero()) == 0, "split-K left a counter set"
        T.assert_close_to_reference(first, T.reference_linear(x, qw, bias), x=x, weight=qw, bias=bias,
                                    msg=f"M={m} N={n} K={k} {config}")
        unsplit = launch_weight_only(x, qw.packed, qw.scales, qw.zeros, bias, fmt, n, k,
                                     dataclasses.replace(config, split_k=1)).double()
        apart = (first.double() - unsplit).abs()
        ulp = torch.finfo(x.dtype).eps * torch.maximum(first.double().abs(), unsplit.abs())
        assert bool((apart <= ulp + 1e-4 * unsplit.abs().max()).all()), \
            f"split and unsplit {(apart / ulp).max().item():.3g} ulps apart: M={m} N={n} K={k} {config}"
        assert torch.equal(run(), first), "the partials are added in a fixed order: the same bits again"
        assert int(counters.count_nonzero()) == 0


# split 3: partials of unequal block counts; 2 cost CI ~70 s for nothing 3 misses
@pytest.mark.parametrize("split_k", [1, 3], ids=lambda s: f"split_k={s}")
@pytest.mark.parametrize("layout", EXAMPLES, ids=IDS)
@settings(max_examples=max(3, settings.default.max_examples // 2))
@given(data=st.data(), config=T.kernel_configs("gemm"))
def test_gemm_kernel_matches_reference(layout, split_k, data, config):
    """block_m 64 and the schedule switches (drawn) pick the per-element or per-block scale paths."""
    case = data.draw(T.quantized_linear_cases(layout, max_m=40, max_n=200, max_k=300, device=DEVICE), label="case")
    _run_kernel(case, dataclasses.replace(config, split_k=split_k))


@pytest.mark.parametrize("layout", EXAMPLES, ids=IDS)
@KERNEL
@given(data=st.data(), config=T.kernel_configs())
def test_kernel_exact_on_exact_data(layout, data, config):
    """Data on which float32 arithmetic is exact: the output must be the exact result rounded once
    to the dtype, bit for bit (a tolerance would let one wrong code or a 1% scale error pass)."""
    case = data.draw(T.exact_linear_cases(layout, max_m=4 if config.kernel == "gemv" else 40, max_n=200, max_k=300,
                                          device=DEVICE), label="case")
    qw, x = case.weight, case.x
    n, k = qw.shape
    out = launch_weight_only(x, qw.packed, qw.scales, qw.zeros, case.bias, qw.quant_layout.weight_format(), n, k,
                             config, table=qw.table)
    T.assert_exact(out, T.reference_linear(x, qw, case.bias), msg=f"{case} {config}")


@pytest.mark.parametrize("layout", EXAMPLES, ids=IDS)
@pytest.mark.parametrize("config", [KernelConfig("gemv", 32), KernelConfig("gemm", 32, 16, 1),
                                    KernelConfig("gemm", 16, 64, 3)], ids=["gemv", "gemm", "gemm-splitk3-bm64"])
def test_ragged_tiles(layout, config):
    """Tiles that divide neither M nor N, K not a multiple of the packed block, with bias."""
    gen = torch.Generator().manual_seed(0)
    k = 3 * layout.group_size if layout.group_size else 201 * layout.k_multiple()
    m, n = (3 if config.kernel == "gemv" else 17), 50  # the GEMV has no M tile: rows cost, raggedness is in N, K
    qw = T.quantize_for_layout(T.make_weight((n, k), torch.bfloat16, "outliers", 1, DEVICE), layout)
    x = torch.randn(m, k, generator=gen).to(torch.bfloat16).to(DEVICE)
    bias = torch.randn(n, generator=gen).to(torch.bfloat16).to(DEVICE)
    case = T.LinearCase(x, qw, bias, "outliers")
    _run_kernel(case, config)


@pytest.mark.parametrize("layout", EXAMPLES, ids=IDS)
@settings(max_examples=max(2, settings.default.max_examples // 3))
@given(data=st.data(), batch=st.sampled_from([(), (2,), (2, 3)]))
def test_linear_op_matches_reference(layout, data, batch):
    """The public path: F.linear on the weight (tqk::weight_only_linear picks the kernel by M),
    with leading batch dims."""
    case = data.draw(T.quantized_linear_cases(layout, max_m=6, max_n=80, max_k=260, device=DEVICE), label="case")
    x = case.x.expand(*batch, *case.x.shape)  # a non-contiguous view when batched
    out = F.linear(x, case.weight, case.bias)
    assert out.shape == (*batch, case.x.shape[0], case.weight.shape[0])
    ref = T.reference_linear(x, case.weight, case.bias)
    T.assert_close_to_reference(out, ref, x=x, weight=case.weight, bias=case.bias, msg=repr(case))
