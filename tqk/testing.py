"""Test helpers for tqk and for kernels built on it: hypothesis strategies and float64 references.

    from hypothesis import given
    from tqk import testing

    @given(testing.quantized_linear_cases())
    def test_my_kernel(case):
        out = my_kernel(case.x, case.weight, case.bias)
        testing.assert_close_to_reference(out, testing.reference_linear(case.x, case.weight, case.bias),
                                          x=case.x, weight=case.weight, bias=case.bias)

The references here do not call tqk's own dequantizer (tqk.kernels.reference) or unpacker
(tqk.layouts.packing.unpack_planes): they re-derive the packed format from its documented
formula, so a test comparing a kernel with them can catch a bug shared by both tqk paths.

hypothesis is imported lazily: the references (`reference_linear`, `sqnr`,
`assert_close_to_reference`, ...) work without it, and the strategies raise ImportError
(install the `test` extra) only when called.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .quant.codebook import nearest_codes, nearest_vectors
from .quant.fpx import fpx_max, fpx_values, quantize_fpx
from .layouts import LAYOUTS, Layout
from .tensor import QuantizedLinearWeight

__all__ = [
    "DISTRIBUTIONS", "default_device", "weights", "activations", "linear_shapes", "layouts", "all_layout_examples",
    "kernel_configs",
    "quantize_for_layout", "random_codes_weight", "quantized_linear_cases", "LinearCase",
    "exact_linear_case", "exact_linear_cases", "valid_codes", "assert_exact", "unpack_reference", "codes_reference",
    "dequantize_reference", "scale_reference", "reference_linear", "linear_magnitude", "carried_bias_magnitude", "sqnr",
    "unit_roundoff",
    "assert_close_to_reference", "input_scale_for",
]

DISTRIBUTIONS = ("normal", "outliers", "zero_groups", "constant_groups", "tiny", "huge")
_FP8 = {"e4m3": torch.float8_e4m3fn, "e5m2": torch.float8_e5m2}


def _st():
    try:
        from hypothesis import strategies as st
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("tqk.testing strategies need hypothesis (pip install 'tqk[test]')") from e
    return st


def default_device() -> torch.device:
    """CUDA when present (kernels compiled), else CPU (kernels run by Triton's interpreter)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ------------------------------------------------------------------------------------------
# Weights and activations
# ------------------------------------------------------------------------------------------
def tiny_magnitude(dtype: torch.dtype) -> float:
    """A weight magnitude near the bottom of `dtype`'s normal range: 1e-30 for bfloat16 (whose
    range is float32's), a few smallest normals for float16 (6e-5: 1e-30 would be zero)."""
    return max(1e-30, 4 * torch.finfo(dtype).smallest_normal)


def huge_magnitude(dtype: torch.dtype) -> float:
    """A weight magnitude near max/4 of `dtype` (the largest elements of a 'huge' draw)."""
    return torch.finfo(dtype).max / 4


def make_weight(shape, dtype: torch.dtype, distribution: str, seed: int, device="cpu") -> torch.Tensor:
    """A deterministic float weight [N, K] drawn from one of DISTRIBUTIONS (all values finite)."""
    n, k = shape
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g, dtype=torch.float64)
    if distribution == "normal":
        w = w * 0.02
    elif distribution == "outliers":
        # Student-t with 2 degrees of freedom (heavy tails) plus a few planted outliers at 50x.
        chi2 = torch.randn(n, k, 2, generator=g, dtype=torch.float64).pow(2).sum(-1)
        w = 0.02 * w / (chi2 / 2).sqrt().clamp(min=0.05)
        idx = torch.randint(0, n * k, (max(1, n * k // 500),), generator=g)
        w.view(-1)[idx] = 0.02 * 50 * torch.sign(torch.randn(idx.numel(), generator=g, dtype=torch.float64))
    elif distribution in ("zero_groups", "constant_groups"):
        # Whole rows and aligned 32-wide segments constant (so per-row, per-group and
        # per-32 scales all meet a group with max == min).
        w = w * 0.02
        rows = torch.rand(n, generator=g) < 0.25
        segs = torch.rand(n, -(-k // 32), generator=g) < 0.3
        mask = (segs.repeat_interleave(32, dim=1)[:, :k]) | rows[:, None]
        if distribution == "zero_groups":
            fill = torch.zeros(n, k, dtype=torch.float64)
        else:
            fill = (torch.randn(n, 1, generator=g, dtype=torch.float64) * 0.05).expand(n, k)
        w = torch.where(mask, fill, w)
    elif distribution == "tiny":
        w = w * tiny_magnitude(dtype)
    elif distribution == "huge":
        w = w / w.abs().max().clamp(min=1e-300) * huge_magnitude(dtype)
    else:
        raise ValueError(f"unknown distribution {distribution!r}; choose one of {DISTRIBUTIONS}")
    w = w.to(dtype)
    assert bool(torch.isfinite(w).all())
    return w.to(device)


def weights(shape, dtype=torch.bfloat16, distribution=None, device="cpu"):
    """Strategy: a float weight tensor of `shape` ([N, K]; a tuple or a strategy of tuples) in
    `dtype`, from `distribution` (one of DISTRIBUTIONS, or None: any of them)."""
    st = _st()
    shapes = shape if isinstance(shape, st.SearchStrategy) else st.just(tuple(shape))
    dists = st.sampled_from(DISTRIBUTIONS) if distribution is None else st.just(distribution)
    return st.builds(lambda s, d, seed: make_weight(s, dtype, d, seed, device), shapes, dists,
                     st.integers(0, 2**31 - 1))


def activations(shape, dtype=torch.bfloat16, device="cpu"):
    """Strategy: standard-normal activations of `shape` (a tuple or a strategy of tuples)."""
    st = _st()
    shapes = shape if isinstance(shape, st.SearchStrategy) else st.just(tuple(shape))

    def build(s, seed):
        g = torch.Generator().manual_seed(seed)
        return torch.randn(*s, generator=g, dtype=torch.float32).to(dtype).to(device)
    return st.builds(build, shapes, st.integers(0, 2**31 - 1))


def linear_shapes(max_m: int = 40, max_n: int = 300, max_k: int = 300, k_multiple: int = 1, min_m: int = 1):
    """Strategy: (M, N, K) with M = 1 drawn often, any N (odd included) and K a multiple of
    `k_multiple` (a layout's group size), rarely a multiple of a kernel's K tile."""
    st = _st()
    k_max = max(1, max_k // k_multiple)
    return st.tuples(
        st.one_of(st.just(max(1, min_m)), st.integers(min_m, max_m)),
        st.one_of(st.integers(1, max_n), st.sampled_from([n for n in (1, 15, 17, 33, 100, 255) if n <= max_n])),
        st.integers(1, k_max).map(lambda q: q * k_multiple),
    )


def kernel_configs(kernel=None, block_n=(16, 32, 64), block_m=(16, 32, 64), split_k=(1, 2, 3), num_warps=(4,),
                   num_stages=(2,)):
    """Strategy: a tqk KernelConfig for `kernel` ("gemv", "gemm" or None: either). Every boolean
    field of KernelConfig (schedule switches such as one_dot, block_scale, adjacent_splits) is
    drawn too, so a new switch is exercised by the existing property tests; `wide` decides which
    trip lengths the GEMV may draw, and whether it may be `biased` (narrow trips only)."""
    import dataclasses

    from .kernels.tuning import KernelConfig

    st = _st()
    switches = {f.name: st.booleans() for f in dataclasses.fields(KernelConfig)
                if isinstance(f.default, bool) and f.name not in ("wide", "biased")}
    common = dict(num_warps=st.sampled_from(num_warps), num_stages=st.sampled_from(num_stages))
    gemv = st.booleans().flatmap(lambda wide: st.builds(
        KernelConfig, st.just("gemv"), st.sampled_from(block_n), split_k=st.sampled_from(split_k), wide=st.just(wide),
        trip_blocks=st.sampled_from((2, 4, 8, 16) if wide else (1, 2)),
        biased=st.just(False) if wide else st.booleans(), **common, **switches))
    gemm = st.builds(KernelConfig, st.just("gemm"), st.sampled_from(block_n), st.sampled_from(block_m),
                     st.sampled_from(split_k), **common, **switches)
    return {"gemv": gemv, "gemm": gemm}[kernel] if kernel else st.one_of(gemv, gemm)


def all_layout_examples(family: str = "weight_only") -> list[Layout]:
    """Every registered layout's examples() of one kernel family (read now, so layouts registered
    later count): "weight_only" or "scaled" (Layout.family)."""
    return [ex for cls in LAYOUTS.values() if cls.family == family for ex in cls.examples()]


def layouts():
    """Strategy: an example instance of any registered layout."""
    return _st().sampled_from(all_layout_examples())


# ------------------------------------------------------------------------------------------
# Quantizing for a layout (test-side, generic: needs only the layout's weight_format())
# ------------------------------------------------------------------------------------------
def _store(t: torch.Tensor, dtype) -> torch.Tensor:
    """A positive float64 scale rounded to `dtype`, kept >= its smallest normal."""
    return t.clamp(min=torch.finfo(dtype).smallest_normal, max=torch.finfo(dtype).max).to(dtype)


def quantize_for_layout(w: torch.Tensor, layout: Layout) -> QuantizedLinearWeight:
    """A crude min/max quantizer for any layout, for kernel tests (the quality does not matter,
    only that codes, scales and zeros are valid and come from a realistic weight). Codes are
    computed from the stored (rounded) scales, so quantization and storage agree."""
    fmt = layout.weight_format()
    dtype = w.dtype
    n, k = w.shape
    g = fmt.group_size or k
    if k % g:
        raise ValueError(f"group_size={g} does not divide K={k}")
    wg = w.double().reshape(n, k // g, g)
    zeros = table = None
    if fmt.scale_fmt != "float":  # block-scaled floats: byte scales (and NVFP4's tensor scale in zeros)
        scale, scale_codes, zeros = _byte_scales(wg, fmt)
        codes = _float_codes(wg / scale[..., None], fmt.element).reshape(n, k)
        packed = layout.pack(codes.cpu()).to(w.device)
        return QuantizedLinearWeight(packed, scale_codes.t().contiguous().to(w.device),
                                     None if zeros is None else zeros.to(w.device), layout, (n, k), dtype)
    if fmt.element == "uint":
        qmax = (1 << fmt.bits) - 1
        if fmt.zero_mode == "tensor":  # asymmetric, float (possibly fractional) zero point
            lo = wg.amin(-1).clamp(max=0)
            hi = wg.amax(-1).clamp(min=0)
            scale = _store((hi - lo) / qmax, dtype)
            zero = (-lo / scale.double()).clamp(0, qmax).to(dtype)
            codes = (wg / scale.double()[..., None] + zero.double()[..., None]).round().clamp(0, qmax)
            zeros = zero.t().contiguous()
        elif fmt.zero_mode == "offset":  # symmetric around zero_offset
            scale = _store(wg.abs().amax(-1) / max(1, qmax - fmt.zero_offset), dtype)
            codes = (wg / scale.double()[..., None]).round().add(fmt.zero_offset).clamp(0, qmax)
        else:  # plain unsigned codes: negative weights clamp to 0
            scale = _store(wg.clamp(min=0).amax(-1) / qmax, dtype)
            codes = (wg / scale.double()[..., None]).round().clamp(0, qmax)
        codes = codes.to(torch.uint8)
    elif fmt.element.startswith("fpx"):  # small floats: tqk's own encode (round to nearest even)
        e, m = int(fmt.element[3]), int(fmt.element[4])
        scale = _store(wg.abs().amax(-1) / fpx_max(e, m), dtype)
        codes = quantize_fpx(wg / scale.double()[..., None], e, m)
    elif fmt.element == "lut" and fmt.vector_size > 1:  # fixed seeded entries in [-1, 1]^v, scaled by absmax
        v = fmt.vector_size
        u = torch.rand(1 << fmt.bits, v, generator=torch.Generator().manual_seed(fmt.bits * 8 + v), dtype=torch.float64)
        table = (2 * u - 1).to(dtype)
        scale = _store(wg.abs().amax(-1), dtype)
        vectors = (wg / scale.double()[..., None]).reshape(-1, v)
        codes = nearest_vectors(vectors, table.to(w.device)).to(torch.uint8).reshape(n, k // v)
        table = table.to(w.device)
    elif fmt.element == "lut":  # a fixed non-uniform table on [-1, 1] (denser near 0), scaled by absmax
        u = torch.linspace(-1, 1, 1 << fmt.bits, dtype=torch.float64)
        table = (u.sign() * u.abs() ** 1.5).to(dtype)
        scale = _store(wg.abs().amax(-1), dtype)
        codes = nearest_codes(wg / scale.double()[..., None], table)
        table = table.to(w.device)
    else:
        f8 = _FP8[fmt.element]
        fmax = torch.finfo(f8).max
        scale = _store(wg.abs().amax(-1) / fmax, dtype)
        v = (wg / scale.double()[..., None]).clamp(-fmax, fmax)
        codes = v.float().to(f8).view(torch.uint8)
    codes = codes.reshape(n, k // fmt.vector_size)
    packed = layout.pack(codes.cpu()).to(w.device)
    return QuantizedLinearWeight(packed, scale.t().contiguous().to(w.device),
                                 None if zeros is None else zeros.to(w.device), layout, (n, k), dtype, table)


def _element_max(element: str) -> float:
    if element in _FP8:
        return torch.finfo(_FP8[element]).max
    return fpx_max(int(element[3]), int(element[4]))


def _float_codes(v: torch.Tensor, element: str) -> torch.Tensor:
    """float64 values already divided by their scale -> uint8 codes of a float element (nearest, saturating)."""
    if element in _FP8:
        fmax = torch.finfo(_FP8[element]).max
        return v.clamp(-fmax, fmax).float().to(_FP8[element]).view(torch.uint8)
    return quantize_fpx(v, int(element[3]), int(element[4]))


def _byte_scales(wg: torch.Tensor, fmt) -> tuple:
    """Scales of a block-scaled float weight [N, groups, g] (float64): (the float64 scale of each group,
    its uint8 codes [N, groups], NVFP4's float32 tensor scale [1] or None). e8m0: the power of two at or
    above amax / element max (RCEIL); e4m3: amax / (448 * element max) per tensor, then the e4m3 byte
    of each group's amax / element max over it."""
    emax = _element_max(fmt.element)
    amax = wg.abs().amax(-1)
    if fmt.scale_fmt == "e8m0":
        m, e = torch.frexp(torch.where(amax > 0, amax / emax, torch.ones_like(amax)))
        code = (torch.where(m == 0.5, e - 1, e).clamp(-127, 127) + 127).to(torch.uint8)
        return torch.exp2(code.double() - 127), code, None
    top = float(amax.max()) if amax.numel() else 0.0
    ts = torch.tensor([top / (448.0 * emax) if top > 0 else 1.0], dtype=torch.float32, device=wg.device)
    code = (amax / emax / ts.double()).clamp(max=448.0).float().to(torch.float8_e4m3fn).view(torch.uint8)
    scale = code.view(torch.float8_e4m3fn).double() * ts.double()
    return torch.where(scale > 0, scale, torch.ones_like(scale)), code, ts


def _random_byte_scales(fmt, groups: int, n: int, g: torch.Generator) -> tuple:
    """Random valid scale codes [groups, N] of magnitude ~2**-10 .. 2**2 over the element's largest value,
    and NVFP4's tensor scale (a random float32 near 1) or None."""
    shift = math.floor(math.log2(_element_max(fmt.element)))
    if fmt.scale_fmt == "e8m0":
        return (127 - shift + torch.randint(-6, 3, (groups, n), generator=g)).to(torch.uint8), None
    values = torch.exp2(torch.rand(groups, n, generator=g) * 12 - 10)
    ts = torch.exp2(torch.rand(1, generator=g) * 4 - 2 - shift)
    return values.to(torch.float8_e4m3fn).view(torch.uint8), ts.float()


def valid_codes(element: str, bits: int) -> torch.Tensor:
    """Every code a format can hold with a finite value (fp8 NaN / Inf patterns excluded)."""
    codes = torch.arange(1 << bits, dtype=torch.int32).to(torch.uint8)
    if element in _FP8:
        codes = codes[torch.isfinite(codes.view(_FP8[element]).float())]
    return codes


def _table_shape(fmt) -> tuple:
    """A codebook's table: [2**bits] entries, or [2**bits, v] for codes of v features."""
    return (1 << fmt.bits,) if fmt.vector_size == 1 else (1 << fmt.bits, fmt.vector_size)


def random_codes_weight(layout: Layout, n: int, k: int, dtype, seed: int, device="cpu") -> QuantizedLinearWeight:
    """Uniformly random valid codes, scales of random magnitude in [2**-10, 2**2), random zero
    points in [0, 2**bits - 1] (fractional, like HQQ's)."""
    fmt = layout.weight_format()
    g = torch.Generator().manual_seed(seed)
    allowed = valid_codes(fmt.element, fmt.bits)
    codes = allowed[torch.randint(0, allowed.numel(), (n, k // fmt.vector_size), generator=g)]
    groups = layout.n_groups(k)
    if fmt.scale_fmt != "float":
        scales, zeros = _random_byte_scales(fmt, groups, n, g)
        return QuantizedLinearWeight(layout.pack(codes).to(device), scales.to(device),
                                     None if zeros is None else zeros.to(device), layout, (n, k), dtype)
    scales = torch.exp2(torch.rand(groups, n, generator=g) * 12 - 10).to(dtype)
    if fmt.element in _FP8:  # fp8 values reach 448 / 57344: keep the products moderate
        scales = (scales.float() / torch.finfo(_FP8[fmt.element]).max).to(dtype)
    zeros = None
    if fmt.zero_mode == "tensor":
        zeros = (torch.rand(groups, n, generator=g) * ((1 << fmt.bits) - 1)).to(dtype).to(device)
    table = None
    if fmt.element == "lut":  # random entries, in no order
        table = torch.randn(_table_shape(fmt), generator=g).to(dtype).to(device)
    return QuantizedLinearWeight(layout.pack(codes).to(device), scales.to(device), zeros, layout, (n, k), dtype,
                                 table)


@dataclass
class LinearCase:
    x: torch.Tensor  # [M, K]
    weight: QuantizedLinearWeight  # [N, K]
    bias: torch.Tensor | None  # [N]
    distribution: str

    def __repr__(self):
        return (f"LinearCase(M={self.x.shape[0]}, N={self.weight.shape[0]}, K={self.weight.shape[1]}, "
                f"dtype={self.x.dtype}, layout={self.weight.quant_layout}, dist={self.distribution}, "
                f"bias={self.bias is not None})")


def input_scale_for(weight_absmax: float, k: int, dtype) -> float:
    """A power of two s such that outputs of x * s (|x| <~ 6) against weights up to
    `weight_absmax` cannot overflow `dtype` (powers of two scale exactly)."""
    budget = torch.finfo(dtype).max / 64
    worst = max(weight_absmax, 1e-30) * 8 * k
    return 1.0 if worst <= budget else 2.0 ** math.floor(math.log2(budget / worst))


def quantized_linear_cases(layout=None, dtypes=(torch.bfloat16, torch.float16), max_m=40, max_n=300, max_k=300,
                           distribution=None, bias=None, device="cpu"):
    """Strategy: a LinearCase (x, quantized weight, bias) for `layout` (None: any registered
    layout). The weight comes from `weights()` quantized by quantize_for_layout, or (as the
    'random_codes' distribution) from uniformly random codes. x is scaled by a power of two
    when the weight is huge, so the exact output fits the dtype."""
    st = _st()
    layout_st = layouts() if layout is None else st.just(layout)
    dists = st.sampled_from(DISTRIBUTIONS + ("random_codes",)) if distribution is None else st.just(distribution)
    bias_st = st.booleans() if bias is None else st.just(bias)

    @st.composite
    def build(draw):
        lay = draw(layout_st)
        dtype = draw(st.sampled_from(dtypes))
        m, n, k = draw(linear_shapes(max_m, max_n, max_k, k_multiple=lay.k_multiple()))
        dist = draw(dists)
        seed = draw(st.integers(0, 2**31 - 1))
        if dist == "random_codes":
            qw = random_codes_weight(lay, n, k, dtype, seed, device)
        else:
            qw = quantize_for_layout(make_weight((n, k), dtype, dist, seed, device), lay)
        gen = torch.Generator().manual_seed(seed + 1)
        w_max = float(dequantize_reference(qw).abs().max()) if n * k else 0.0
        x = torch.randn(m, k, generator=gen) * input_scale_for(w_max, k, dtype)
        b = None
        if draw(bias_st):
            b_scale = min(1.0, torch.finfo(dtype).max / 64)
            b = (torch.randn(n, generator=gen) * b_scale).to(dtype).to(device)
        return LinearCase(x.to(dtype).to(device), qw, b, dist)
    return build()


def exact_linear_case(layout: Layout, m: int, n: int, k: int, dtype, seed: int, bias: bool = True,
                      device="cpu") -> LinearCase:
    """A case on which a correct kernel is EXACT: every product and partial sum is a multiple of
    2**-5 below 2**19 (K <= 512), so float32 accumulation in any order, split-K included, and
    rounding a dequantized weight to bf16/fp16 lose nothing, and the output must equal the float64
    reference rounded once to `dtype`, bit for bit. Codes are uniform (fp8: those with |value| <= 16
    on a 2**-2 grid; codebook entries on that grid too), zero points integers, scales powers of two in [2**-2, 1], x in
    {-4, -3.5, ..., 4}, bias in {-64, ..., 64} / 8. Catches what a tolerance cannot: one wrong
    code, a dropped K tail, a scale off by 1%."""
    if k > 512:
        raise ValueError("exact cases need K <= 512 to stay exact in float32")
    fmt = layout.weight_format()
    g = torch.Generator().manual_seed(seed)
    allowed = valid_codes(fmt.element, fmt.bits)
    if fmt.element in _FP8:
        v = allowed.view(_FP8[fmt.element]).double()
        allowed = allowed[(v.abs() <= 16) & ((v * 4).round() == v * 4)]
    codes = allowed[torch.randint(0, allowed.numel(), (n, k // fmt.vector_size), generator=g)]
    groups = layout.n_groups(k)
    exps = torch.randint(0, 3, (groups, n), generator=g)
    scales = torch.exp2(-exps.double()).to(dtype)
    zeros = None
    if fmt.scale_fmt == "e8m0":  # the same powers of two as codes
        scales = (127 - exps).to(torch.uint8)
    elif fmt.scale_fmt == "e4m3":  # as e4m3 bytes, and a tensor scale of 1 or 1/2
        scales = torch.exp2(-exps.float()).to(torch.float8_e4m3fn).view(torch.uint8)
        zeros = torch.exp2(-torch.randint(0, 2, (1,), generator=g).float()).to(device)
    if fmt.zero_mode == "tensor":
        zeros = torch.randint(0, 1 << fmt.bits, (groups, n), generator=g).to(dtype).to(device)
    table = None
    if fmt.element == "lut":
        table = (torch.randint(-64, 65, _table_shape(fmt), generator=g).double() / 4).to(dtype).to(device)
    qw = QuantizedLinearWeight(layout.pack(codes).to(device), scales.to(device), zeros, layout, (n, k), dtype, table)
    x = (torch.randint(-8, 9, (m, k), generator=g).double() / 2).to(dtype).to(device)
    b = (torch.randint(-64, 65, (n,), generator=g).double() / 8).to(dtype).to(device) if bias else None
    return LinearCase(x, qw, b, "exact")


def exact_linear_cases(layout=None, dtypes=(torch.bfloat16, torch.float16), max_m=40, max_n=300, max_k=300,
                       device="cpu"):
    """Strategy: exact_linear_case(...) with drawn layout, dtype, shape and bias."""
    st = _st()
    layout_st = layouts() if layout is None else st.just(layout)

    @st.composite
    def build(draw):
        lay = draw(layout_st)
        m, n, k = draw(linear_shapes(max_m, max_n, min(max_k, 512), k_multiple=lay.k_multiple()))
        return exact_linear_case(lay, m, n, k, draw(st.sampled_from(dtypes)), draw(st.integers(0, 2**31 - 1)),
                                 draw(st.booleans()), device)
    return build()


# ------------------------------------------------------------------------------------------
# Independent references
# ------------------------------------------------------------------------------------------
def _per_word(bits: int) -> int:
    p = 1
    while p * 2 * bits <= 32:
        p *= 2
    return p


def unpack_reference(packed: torch.Tensor, bits: int, span: int, k: int) -> torch.Tensor:
    """uint8 codes [N, k] from packed int32 words, straight from the documented format
    (tqk/layouts/packing.py).

    1, 2, 4, 8 bits: code c of a row is in word (c // block) * span + c % span, at bit offset
    ((c % block) // span) * bits, where block = codes_per_word * span.
    3, 5, 6, 7 bits (dense): block = 8 * span codes in bits * span / 4 words; code c is plane
    j = (c % block) // span, lane s = c % span of its block. Its bits are slices of w = 4, 2, 1 bits
    (the binary digits of `bits`, from the code's low bits up); the slice starting at code bit o is
    in word (c // block) * bits * span / 4 + o * span / 4 + s % (span * w / 4), at bit
    4j + w * (s // (span * w / 4))."""
    words = packed.to(torch.int64) & 0xFFFFFFFF  # the int32 bit pattern, unsigned
    c = torch.arange(k, device=packed.device)
    if bits not in (3, 5, 6, 7):
        per_word = _per_word(bits)
        block = per_word * span
        word = (c // block) * span + (c % block) % span
        shift = ((c % block) // span) * bits
        return ((words[:, word] >> shift) & ((1 << bits) - 1)).to(torch.uint8)
    block = 8 * span
    j, s = (c % block) // span, c % span
    codes = torch.zeros(packed.shape[0], k, dtype=torch.int64, device=packed.device)
    low = 0  # the code bit where the next slice starts
    for w in (4, 2, 1):
        if bits & w:
            lanes = span * w // 4  # words of the slice in a block
            word = (c // block) * (bits * span // 4) + low * span // 4 + s % lanes
            shift = 4 * j + w * (s // lanes)
            codes |= ((words[:, word] >> shift) & ((1 << w) - 1)) << low
            low += w
    return codes.to(torch.uint8)


def decode_reference(codes: torch.Tensor, element: str, table: torch.Tensor | None = None) -> torch.Tensor:
    """float64 element values of uint8 codes: the integer, torch's own fp8 decoding, the small-float
    formula (fpx_values, from sign, exponent and mantissa fields), or ("lut") entry `code` of the
    codebook `table`; a vector table's [2**bits, v] entries: codes [N, K / v] -> values [N, K], code c's
    entry at features c * v .. c * v + v - 1."""
    if element == "uint":
        return codes.to(torch.float64)
    if element == "lut":
        if table is None:
            raise ValueError("a codebook (\"lut\") weight's decode needs its table")
        values = table.double()[codes.long()]
        return values.flatten(-2) if table.dim() == 2 else values
    if element.startswith("fpx"):
        return fpx_values(int(element[3]), int(element[4])).to(codes.device)[codes.long()]
    return codes.view(_FP8[element]).to(torch.float64)


def scale_reference(weight: QuantizedLinearWeight) -> torch.Tensor:
    """float64 group scales [n_groups, N] from their documented storage (WeightFormat.scale_fmt): the
    floats; E8M0 codes c, 2**(c - 127) with 0xFF NaN (OCP MX v1.0, 5.4.1); NVFP4's e4m3 bytes (torch's
    float8_e4m3fn) times the float32 tensor scale held in `zeros`."""
    scale_fmt = weight.quant_layout.weight_format().scale_fmt
    if scale_fmt == "float":
        return weight.scales.double()
    if scale_fmt == "e8m0":
        code = weight.scales.to(torch.int64)
        return torch.where(code == 0xFF, math.nan, torch.exp2((code - 127).double()))
    return weight.scales.view(torch.float8_e4m3fn).double() * weight.zeros.double().reshape(())


def codes_reference(weight: QuantizedLinearWeight) -> torch.Tensor:
    """uint8 codes [N, K / vector_size] of a weight-only weight, by unpack_reference."""
    fmt = weight.quant_layout.weight_format()
    return unpack_reference(weight.packed, fmt.bits, fmt.span, weight.shape[1] // fmt.vector_size)


def dequantize_reference(weight: QuantizedLinearWeight) -> torch.Tensor:
    """float64 [N, K]: (decode(code) - zero) * scale, exactly (no rounding to the model dtype)."""
    fmt = weight.quant_layout.weight_format()
    n, k = weight.shape
    vals = decode_reference(codes_reference(weight), fmt.element, weight.table)
    g = fmt.group_size or k
    group_of = torch.arange(k, device=vals.device) // g  # column -> group
    scale = scale_reference(weight).t()[:, group_of]  # [N, K]
    if fmt.zero_mode == "tensor":
        vals = vals - weight.zeros.double().t()[:, group_of]
    elif fmt.zero_mode == "offset":
        vals = vals - fmt.zero_offset
    return vals * scale


def _magnitude_matrix(weight) -> torch.Tensor:
    """|scale| * (|decode(code)| + |zero|): bounds every partial value a kernel forms for the
    element (before or after the zero point is subtracted)."""
    if not isinstance(weight, QuantizedLinearWeight):
        return weight.detach().double().abs()
    fmt = weight.quant_layout.weight_format()
    vals = decode_reference(codes_reference(weight), fmt.element, weight.table).abs()
    if fmt.zero_mode == "tensor":
        vals = vals + weight.zeros.double().abs().t()[:, _group_of(weight)]
    elif fmt.zero_mode == "offset":
        vals = vals + abs(fmt.zero_offset)
    return vals * _abs_scale_matrix(weight)


def _group_of(weight) -> torch.Tensor:
    """The group index of each of the weight's K columns."""
    k = weight.shape[1]
    return torch.arange(k, device=weight.scales.device) // (weight.quant_layout.weight_format().group_size or k)


def _abs_scale_matrix(weight) -> torch.Tensor:
    """|scale| of every element, float64 [N, K]."""
    return scale_reference(weight).abs().t()[:, _group_of(weight)]


def reference_linear(x: torch.Tensor, weight, bias: torch.Tensor | None = None) -> torch.Tensor:
    """float64 x @ W.T + bias, W = dequantize_reference(weight) (or `weight` itself if float)."""
    w = dequantize_reference(weight) if isinstance(weight, QuantizedLinearWeight) else weight.detach().double()
    out = x.detach().double() @ w.t()
    return out if bias is None else out + bias.detach().double()


def carried_bias_magnitude(x: torch.Tensor, weight) -> torch.Tensor:
    """sum_k |x_k| * |s_k| * gemv_bias per output: the scale at which a kernel that leaves a bias
    of gemv_bias code units on decoded values (WeightFormat.gemv_bias) rounds one block's sums
    before the zero point takes the bias off. 0 for float weights and unbiased formats."""
    fmt = weight.quant_layout.weight_format() if isinstance(weight, QuantizedLinearWeight) else None
    if fmt is None or fmt.gemv_bias == 0:
        return torch.zeros(x.shape[:-1] + (weight.shape[0],), dtype=torch.float64, device=x.device)
    return fmt.gemv_bias * (x.detach().double().abs() @ _abs_scale_matrix(weight).t())


def linear_magnitude(x: torch.Tensor, weight, bias: torch.Tensor | None = None) -> torch.Tensor:
    """float64 sum_k |x_k| * |w_k| (+ |bias|) per output: the scale of the rounding errors."""
    out = x.detach().double().abs() @ _magnitude_matrix(weight).t()
    return out if bias is None else out + bias.detach().double().abs()


def seeded_linear(rows: int, features: int = 1024, seed: int = 0):
    """The issues' accuracy case: W [features, features] and x [rows, features] ~ N(0, 1), float64,
    from one seeded generator, with the float64 output x @ W.T. Returns (w, x, reference)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(features, features, generator=g, dtype=torch.float64)
    x = torch.randn(rows, features, generator=g, dtype=torch.float64)
    return w, x, x @ w.T


def sqnr(reference: torch.Tensor, test: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio in dB: 10 log10(sum ref**2 / sum (ref - test)**2)."""
    ref = reference.detach().double()
    noise = (ref - test.detach().double()).pow(2).sum()
    signal = ref.pow(2).sum()
    if noise == 0:
        return math.inf
    return float(10 * torch.log10(signal / noise))


def unit_roundoff(dtype: torch.dtype) -> float:
    """Half an ulp at 1: bfloat16 2**-8, float16 2**-11, float32 2**-24."""
    return torch.finfo(dtype).eps / 2


def assert_close_to_reference(out: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype | None = None, *,
                              x: torch.Tensor | None = None, weight=None, bias=None, k: int | None = None,
                              magnitude: torch.Tensor | None = None, msg: str = ""):
    """Assert a kernel's `out` matches the float64 `ref` within the error a correct kernel can make.

    The bound, per output element (u = unit_roundoff(dtype): bf16 2**-8, fp16 2**-11; u32 = 2**-24):

        |out - ref| <= u * |ref|                   the final rounding of the output to dtype
                     + (u + (K + 8) * u32) * A     A = sum_k |x_k| * |s| * (|code_k| + |zero|) + |bias|
                     + floor

    * u * A: a kernel may round each dequantized weight (or code - zero) to the activation dtype
      before a tensor-core dot (one relative error of u per product term);
    * (K + 8) * u32 * A: float32 accumulation of K products is within K * u32 of the sum of
      magnitudes (the classic gamma_K bound), plus a few float32 operations for the scale, the zero
      point (subtracted after the sum, as s * (sum q x - z sum x): A includes |z|, since that
      difference can cancel) and the bias;
    * floor: half a subnormal ulp per rounded term (values that underflow to subnormals have no
      relative bound): smallest_normal(dtype) * (1 + sum |x|);
    * + 16 * u32 * B, B = carried_bias_magnitude(x, weight): a kernel that decodes to code + bias
      and takes the bias off once per block (WeightFormat.gemv_bias) rounds that block's float32
      sums (8 planes, 3 updates) at the bias's scale. The bias cancels within the block, so this
      term does not grow with K.

    Triton's interpreter (CPU) converts float32 to bfloat16 by truncation, not round-to-nearest:
    there a bfloat16 rounding is worth 2u, and u is doubled.

    A is computed from x and weight when given (preferred), else `magnitude`, else |ref| per
    element (only sound when there is no cancellation, e.g. non-negative data).
    """
    dtype = dtype or out.dtype
    out, ref = out.detach(), ref.detach().double()
    err = (out.double() - ref).abs()
    if out.shape != ref.shape:
        raise AssertionError(f"shape {tuple(out.shape)} != reference shape {tuple(ref.shape)} {msg}")
    carried = 0.0
    if x is not None and weight is not None:
        magnitude = linear_magnitude(x, weight, bias)
        carried = carried_bias_magnitude(x, weight)
        k = x.shape[-1]
        floor = torch.finfo(dtype).smallest_normal * (1 + x.detach().double().abs().sum(-1, keepdim=True))
    else:
        magnitude = ref.abs() if magnitude is None else magnitude.double()
        k = k or 1
        floor = torch.finfo(dtype).smallest_normal * (1 + k)
    u, u32 = unit_roundoff(dtype), unit_roundoff(torch.float32)
    if _interpreter_truncates(dtype, out):
        u = 2 * u
    tol = u * ref.abs() + (u + (k + 8) * u32) * magnitude + 16 * u32 * carried + floor
    bad = ~(err <= tol)  # NaN in out counts as bad
    if bool(bad.any()):
        i = tuple(int(v) for v in bad.nonzero()[0])
        ratio = float((err / tol)[bad].max()) if bool(torch.isfinite(err[bad]).all()) else math.inf
        raise AssertionError(
            f"{int(bad.sum())}/{bad.numel()} elements out of tolerance (worst err/tol {ratio:.3g}); first at {i}: "
            f"out={float(out.double()[i])!r} ref={float(ref[i])!r} tol={float(tol[i]):.3g} {msg}")


def _interpreter_truncates(dtype, out: torch.Tensor) -> bool:
    """Triton's interpreter rounds float32 -> bfloat16 toward zero (it runs kernels on CPU
    tensors when TRITON_INTERPRET=1)."""
    import os

    return dtype == torch.bfloat16 and out.device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1"


def _round_toward_zero_bf16(t: torch.Tensor) -> torch.Tensor:
    bits = t.float().contiguous().view(torch.int32) & ~0xFFFF
    return bits.view(torch.float32).to(torch.bfloat16)


def assert_exact(out: torch.Tensor, ref: torch.Tensor, msg: str = ""):
    """For exact_linear_case: `out` is the float64 `ref` rounded once to out.dtype (to nearest;
    under Triton's interpreter bfloat16 may instead be rounded toward zero), bit for bit."""
    nearest = ref.to(out.dtype)
    ok = (out == nearest) | (out.isnan() & nearest.isnan())
    if _interpreter_truncates(out.dtype, out):
        ok |= out == _round_toward_zero_bf16(ref)
    if not bool(ok.all()):
        bad = (~ok).nonzero()
        i = tuple(int(v) for v in bad[0])
        raise AssertionError(f"{bad.shape[0]}/{ok.numel()} elements differ from the exact result; first at {i}: "
                             f"out={float(out[i])!r} exact={float(ref[i])!r} {msg}")


# ------------------------------------------------------------------------------------------
# Activation-quantized ("scaled") linears: tqk/layouts/scaled.py, tqk/kernels/scaled_mm.py
# ------------------------------------------------------------------------------------------
# What a kernel that quantizes its activations at run time must survive, beyond normal data:
#   zero_rows     whole rows (and, in the other rows, some aligned 128-wide blocks) of zeros: a scale
#                 of 0, whose output must be exactly the bias, never 0/0 = NaN;
#   outlier_rows  one huge element per row (2**8 .. 2**12 times the rest): the row's scale is set
#                 by it and every other code is small;
#   saturating    |x| ~ 448 * 2**e (fp8's largest finite value times a power of two, some exactly
#                 that, some a little off it): after scaling the codes land at or next to +-448
#                 (+-127 for int8), and a static scale saturates them (the clamp before the cast).
ACTIVATION_DISTRIBUTIONS = ("normal", "zero_rows", "outlier_rows", "saturating")
ACTIVATION_ROWS = (1, 7, 33)  # M: one token, odd small batches
BIG_M = 2048  # drawn about one time in ten: many M tiles (keep N and K small with it)
SCALED_BLOCK = 128  # the block side of the documented 1x128 / 128x128 scales
# Weight distributions for scaled layouts: make_weight's, without "huge" (its outputs overflow
# bf16/fp16 at any K), plus random valid codes with random scales and zero points.
SCALED_WEIGHT_DISTRIBUTIONS = tuple(d for d in DISTRIBUTIONS if d != "huge") + ("random_codes",)
_ACT_QMAX = {"int8": 127.0, "e4m3": 448.0}

__all__ += [
    "ACTIVATION_DISTRIBUTIONS", "ACTIVATION_ROWS", "BIG_M", "SCALED_WEIGHT_DISTRIBUTIONS", "make_activation",
    "activation_rows", "activation_batches", "scaled_codes_reference", "scaled_weight_terms",
    "scaled_dequantize_reference", "random_scaled_weight", "quantize_scaled", "scaled_linear_cases",
    "reference_scaled_activation", "reference_scaled_linear", "scaled_linear_magnitude",
    "scaled_float32_roundings", "assert_close_to_scaled_reference",
]


def make_activation(shape, dtype: torch.dtype, distribution: str, seed: int, device="cpu") -> torch.Tensor:
    """A deterministic activation x [M, K] in `dtype` from one of ACTIVATION_DISTRIBUTIONS (finite,
    and small enough that x @ W.T with |W| <~ 1 and K <~ 1000 fits float16)."""
    m, k = shape
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, k, generator=g, dtype=torch.float64)
    if distribution == "normal":
        pass
    elif distribution == "zero_rows":
        rows = torch.rand(m, generator=g) < 0.3
        rows[int(torch.randint(0, m, (1,), generator=g))] = True  # at least one
        nb = -(-k // SCALED_BLOCK)
        blocks = (torch.rand(m, nb, generator=g) < 0.25).repeat_interleave(SCALED_BLOCK, 1)[:, :k]
        x = torch.where(rows[:, None] | blocks, torch.zeros_like(x), x)
    elif distribution == "outlier_rows":
        col = torch.randint(0, k, (m,), generator=g)
        big = torch.exp2(8 + 4 * torch.rand(m, generator=g, dtype=torch.float64))
        x[torch.arange(m), col] = big * torch.sign(torch.randn(m, generator=g, dtype=torch.float64))
    elif distribution == "saturating":
        e = torch.randint(-10, 0, (m, 1), generator=g).double()
        base = 448 * torch.exp2(e)
        # half the rows on exact powers of two (amax / 448 exact), half a little off them
        base = torch.where(torch.rand(m, 1, generator=g) < 0.5, base,
                           base * (1 + 2**-5 * torch.rand(m, 1, generator=g, dtype=torch.float64)))
        frac = 1 - 0.125 * torch.rand(m, k, generator=g, dtype=torch.float64)  # in (0.875, 1]
        frac = torch.where(torch.rand(m, k, generator=g) < 0.25, torch.ones_like(frac), frac)
        x = torch.where(torch.rand(m, k, generator=g) < 0.5, 1.0, -1.0) * base * frac
    else:
        raise ValueError(f"unknown distribution {distribution!r}; choose one of {ACTIVATION_DISTRIBUTIONS}")
    x = x.to(dtype)
    assert bool(torch.isfinite(x).all())
    return x.to(device)


def activation_rows(rows=ACTIVATION_ROWS, big_m: int | None = BIG_M):
    """Strategy: M from `rows`, or `big_m` about one draw in ten (shrinks towards rows[0])."""
    st = _st()
    choices = list(rows) * 3 + ([big_m] if big_m else [])
    return st.sampled_from(choices)


def activation_batches(k, dtype=torch.bfloat16, m=None, distribution=None, device="cpu"):
    """Strategy: activations x [M, K] for an activation-quantized kernel: M from activation_rows()
    (or `m`: an int or a strategy), K an int or a strategy, drawn from `distribution` (one of
    ACTIVATION_DISTRIBUTIONS, or None: any). M = 2048 is drawn now and then: keep K (and the
    weight's N) small with it, or pass m=activation_rows(big_m=None)."""
    st = _st()
    ks = k if isinstance(k, st.SearchStrategy) else st.just(int(k))
    ms = activation_rows() if m is None else (m if isinstance(m, st.SearchStrategy) else st.just(int(m)))
    dists = st.sampled_from(ACTIVATION_DISTRIBUTIONS) if distribution is None else st.just(distribution)
    return st.builds(lambda mm, kk, d, seed: make_activation((mm, kk), dtype, d, seed, device),
                     ms, ks, dists, st.integers(0, 2**31 - 1))


def _scaled_layout_of(weight):
    layout = weight.quant_layout
    if getattr(layout, "family", None) != "scaled":
        raise TypeError(f"not an activation-quantized (scaled) layout: {layout}")
    return layout


def scaled_codes_reference(weight: QuantizedLinearWeight) -> torch.Tensor:
    """uint8 codes [N, K] straight from the documented storage (tqk/layouts/scaled.py), not
    ScaledLayout.unpack: int8 and e4m3 are stored as is; a 4-bit code of column c, in group
    g = c // G at j = c % G, is nibble j // (G/2) (low, then high) of byte g * G/2 + j % (G/2)."""
    layout = _scaled_layout_of(weight)
    n, k = weight.shape
    packed = weight.packed
    if layout.weight == "e2m1":  # code c is nibble c % 2 (low first) of byte c // 2
        c = torch.arange(k, device=packed.device)
        return ((packed.to(torch.int32)[:, c // 2] >> (4 * (c % 2))) & 15).to(torch.uint8)
    if layout.weight != "int4":
        return packed.view(torch.uint8) if packed.dtype == torch.int8 else packed.clone()
    half = layout.group_size // 2
    c = torch.arange(k, device=packed.device)
    byte = (c // layout.group_size) * half + c % half
    shift = 4 * ((c % layout.group_size) // half)
    return ((packed.to(torch.int32)[:, byte] >> shift) & 15).to(torch.uint8)


def scaled_weight_terms(weight: QuantizedLinearWeight):
    """float64 [N, K] each: (value of the code, zero point, scale) of every element, so that
    W = (value - zero) * scale. value: the signed int8, the e4m3 value (torch's decoding), or the
    4-bit code q; zero: the group's integer zero point (0 for 8-bit weights); scale: per row
    scales [N], per 128x128 block [cdiv(N, 128), K // 128], or per group [K // G, N]. MX / NVFP4:
    the element's value (tqk.quant.mx.decode_elements) and its block's E8M0 scale, or e4m3 scale
    times the float32 tensor scale."""
    from .quant.mx import decode_e4m3, decode_e8m0, decode_elements

    layout = _scaled_layout_of(weight)
    n, k = weight.shape
    codes = scaled_codes_reference(weight)
    if layout.block_scaled:
        cols = torch.arange(k, device=codes.device) // layout.k_multiple()
        scales = decode_e8m0(weight.scales) if layout.act_granularity == "mx" else \
            decode_e4m3(weight.scales) * weight.zeros.double()
        values = decode_elements(codes, layout.weight)
        return values, torch.zeros_like(values), scales.t()[:, cols]
    if layout.weight == "int8":
        values = codes.view(torch.int8).double()
    elif layout.weight == "e4m3":
        values = codes.view(torch.float8_e4m3fn).double()
    else:
        values = codes.double()
    zeros = torch.zeros_like(values)
    s = weight.scales.double()
    rows = torch.arange(n, device=s.device)
    cols = torch.arange(k, device=s.device)
    if layout.weight == "int4":
        group = cols // layout.group_size
        scales = s.t()[:, group]
        zeros = weight.zeros.double().t()[:, group]
    elif layout.weight_granularity == "block":
        scales = s[rows // SCALED_BLOCK][:, cols // SCALED_BLOCK]
    else:
        scales = s[:, None].expand(n, k)
    return values, zeros, scales


def scaled_dequantize_reference(weight: QuantizedLinearWeight) -> torch.Tensor:
    """float64 W [N, K] = (value - zero) * scale, exactly (no rounding to the model dtype)."""
    values, zeros, scales = scaled_weight_terms(weight)
    return (values - zeros) * scales


def random_scaled_weight(layout, n: int, k: int, dtype, seed: int, device="cpu") -> QuantizedLinearWeight:
    """Uniformly random valid codes (every int8 byte, -128 included; every finite e4m3 pattern;
    4-bit codes 0..15 with random integer zero points 0..15) and scales of random magnitude,
    chosen so |W| <~ 2: what the format can hold, beyond what the layout's quantizer writes."""
    g = torch.Generator().manual_seed(seed)
    if layout.block_scaled:
        return _random_block_scaled_weight(layout, n, k, dtype, g, device)
    if layout.weight == "int4":
        codes = torch.randint(0, 16, (n, k), generator=g).to(torch.uint8)
        scales = torch.exp2(torch.rand(k // layout.group_size, n, generator=g) * 4 - 8)
        zeros = torch.randint(0, 16, (k // layout.group_size, n), generator=g).to(dtype).to(device)
    else:
        allowed = valid_codes("e4m3" if layout.weight == "e4m3" else "uint", 8)
        codes = allowed[torch.randint(0, allowed.numel(), (n, k), generator=g)]
        shape = (-(-n // SCALED_BLOCK), k // SCALED_BLOCK) if layout.weight_granularity == "block" else (n,)
        scales = torch.exp2(torch.rand(*shape, generator=g) * 4 - 12)
        if layout.weight_granularity == "tensor":
            scales = scales[:1].expand(n).contiguous()
        zeros = None
    return QuantizedLinearWeight(layout.pack(codes).to(device), scales.to(dtype).to(device), zeros, layout,
                                 (n, k), dtype)


def _random_block_scaled_weight(layout, n: int, k: int, dtype, g: torch.Generator, device) -> QuantizedLinearWeight:
    """MX / NVFP4: every finite element code; E8M0 scales putting the element's largest value within
    [2**-6, 2] (MX), or e4m3 scales of 2**-10 .. 448 times a tensor scale of about 2 / 2688 (NVFP4)."""
    from .quant.mx import MX_ELEMENTS, element_bits

    element = layout.weight
    allowed = valid_codes(element if element in _FP8 else "uint", element_bits(element))
    codes = allowed[torch.randint(0, allowed.numel(), (n, k), generator=g)]
    groups = k // layout.k_multiple()
    if layout.act_granularity == "mx":
        emax = MX_ELEMENTS[element][2]
        scales = (127 - emax + torch.randint(-6, 2, (groups, n), generator=g)).to(torch.uint8)
        zeros = None
    else:
        scales = torch.exp2(torch.rand(groups, n, generator=g) * 18.8 - 10).to(torch.float8_e4m3fn).view(torch.uint8)
        zeros = (torch.exp2(torch.rand(1, generator=g) - 0.5) * 2 / 2688).float().to(device)
    return QuantizedLinearWeight(layout.pack(codes).to(device), scales.to(device), zeros, layout, (n, k), dtype)


def quantize_scaled(w: torch.Tensor, layout) -> QuantizedLinearWeight:
    """A float weight quantized by the layout's own quantizer (ScaledLayout.quantize)."""
    packed, scales, zeros = layout.quantize(w)
    return QuantizedLinearWeight(packed, scales, zeros, layout, tuple(w.shape), w.dtype)


def scaled_linear_cases(layout, dtypes=(torch.bfloat16, torch.float16), max_n=300, max_k=300, distribution=None,
                        weight_distribution=None, bias=None, rows=ACTIVATION_ROWS, big_m: int | None = BIG_M,
                        device="cpu"):
    """Strategy: a LinearCase (x, weight, bias) for an activation-quantized `layout`. M from
    activation_rows(rows, big_m); N any (odd, not a multiple of any tile, across a 128 block); K
    a multiple of layout.k_multiple() (any K, odd included, when that is 1). With M = big_m, N <= 40
    and K is one or two multiples (<= 160 when any K goes). x from make_activation, the weight from
    make_weight quantized by the layout, or random codes (SCALED_WEIGHT_DISTRIBUTIONS)."""
    st = _st()
    adists = st.sampled_from(ACTIVATION_DISTRIBUTIONS) if distribution is None else st.just(distribution)
    wdists = st.sampled_from(SCALED_WEIGHT_DISTRIBUTIONS) if weight_distribution is None else \
        st.just(weight_distribution)
    bias_st = st.booleans() if bias is None else st.just(bias)
    mult = layout.k_multiple()

    @st.composite
    def build(draw):
        dtype = draw(st.sampled_from(dtypes))
        m = draw(activation_rows(rows, big_m))
        big = big_m is not None and m >= big_m
        n_max = min(max_n, 40) if big else max_n
        k_max = (2 * mult if mult > 1 else 160) if big else max(max_k, mult)
        n = draw(st.one_of(st.integers(1, n_max),
                           st.sampled_from([v for v in (1, 15, 17, 33, 100, 129, 255) if v <= n_max])))
        k = draw(st.integers(1, max(1, k_max // mult))) * mult
        adist, wdist = draw(adists), draw(wdists)
        seed = draw(st.integers(0, 2**31 - 1))
        if wdist == "random_codes":
            qw = random_scaled_weight(layout, n, k, dtype, seed, device)
        else:
            qw = quantize_scaled(make_weight((n, k), dtype, wdist, seed, device), layout)
        x = make_activation((m, k), dtype, adist, seed + 1, device)
        b = None
        if draw(bias_st):
            b = torch.randn(n, generator=torch.Generator().manual_seed(seed + 2)).to(dtype).to(device)
        return LinearCase(x, qw, b, f"x:{adist}/w:{wdist}")
    return build()


def reference_scaled_activation(x: torch.Tensor, layout) -> torch.Tensor:
    """float64 [M, K]: the activation the GEMM multiplies, dequantize(quantize(x)) with tqk's
    run-time quantizer (tqk/quant/activation.py: torch's own casts)."""
    from .quant.activation import dequantize_activation, quantize_activation

    codes, scales = quantize_activation(x.detach().reshape(-1, x.shape[-1]), layout.act, layout.act_granularity,
                                        layout.static_scale, layout.scaling_mode)
    return dequantize_activation(codes, scales, layout.act, layout.act_granularity)


def reference_scaled_linear(x: torch.Tensor, weight: QuantizedLinearWeight,
                            bias: torch.Tensor | None = None) -> torch.Tensor:
    """float64 out [..., N] = dequantize(quantize(x)) @ W.T + bias, W = scaled_dequantize_reference
    (the documented formula, decoded independently of ScaledLayout.unpack / dequantize)."""
    layout = _scaled_layout_of(weight)
    a = reference_scaled_activation(x, layout)
    out = a @ scaled_dequantize_reference(weight).t()
    if bias is not None:
        out = out + bias.detach().double()
    return out.reshape(*x.shape[:-1], weight.shape[0])


def scaled_linear_magnitude(x: torch.Tensor, weight: QuantizedLinearWeight,
                            bias: torch.Tensor | None = None) -> torch.Tensor:
    """float64 sum_k |a_k| * |w_k| + |bias| per output (a: the dequantized activation): the scale
    of a float32 accumulation's rounding errors."""
    layout = _scaled_layout_of(weight)
    a = reference_scaled_activation(x, layout).abs()
    out = a @ scaled_dequantize_reference(weight).abs().t()
    if bias is not None:
        out = out + bias.detach().double().abs()
    return out.reshape(*x.shape[:-1], weight.shape[0])


def scaled_float32_roundings(layout, k: int) -> int:
    """How many float32 roundings (each u32 relative to the magnitude) a correct GEMM may make per
    output: int8 activations accumulate exactly (int32; exact float32 sums of integers in the
    interpreter), then a float32 roundings per K step whose scale changes along K (blocks, groups;
    MX: two scales and the add), plus the epilogue (scales, bias); e4m3 (and MX, NVFP4's float16)
    products are exact but their float32 sum rounds K times."""
    fmt = layout.scaled_format()
    steps = k // fmt.group if fmt.k_steps else 0
    return 8 + (3 if fmt.a_scale == "e8m0" else 2) * steps + (k if layout.act != "int8" else 0)


def assert_close_to_scaled_reference(out: torch.Tensor, x: torch.Tensor, weight: QuantizedLinearWeight,
                                     bias: torch.Tensor | None = None, msg: str = ""):
    """Assert an activation-quantized kernel's `out` matches reference_scaled_linear within what a
    correct kernel can make: u * |ref| (the output's rounding to its dtype; 2u for bfloat16 under
    Triton's interpreter, which truncates) + scaled_float32_roundings * u32 * magnitude + half a
    subnormal. For int8 x int8 weights per row or tensor that is the rounding of the result, no more.
    NaN anywhere in `out` or in the reference fails (test NaN rows on their own)."""
    ref = reference_scaled_linear(x, weight, bias)
    if out.shape != ref.shape:
        raise AssertionError(f"shape {tuple(out.shape)} != reference shape {tuple(ref.shape)} {msg}")
    dtype = out.dtype
    mag = scaled_linear_magnitude(x, weight, bias)
    u, u32 = unit_roundoff(dtype), unit_roundoff(torch.float32)
    if _interpreter_truncates(dtype, out):
        u = 2 * u
    c = scaled_float32_roundings(weight.quant_layout, weight.shape[1])
    floor = torch.finfo(dtype).smallest_normal * torch.finfo(dtype).eps + torch.finfo(torch.float32).smallest_normal * c
    tol = u * ref.abs() + (1 + 2 * u) * c * u32 * mag + floor
    err = (out.detach().double() - ref).abs()
    bad = ~(err <= tol)
    if bool(bad.any()):
        i = tuple(int(v) for v in bad.nonzero()[0])
        finite = bool(torch.isfinite(err[bad]).all())
        ratio = float((err / tol)[bad].max()) if finite else math.inf
        raise AssertionError(
            f"{int(bad.sum())}/{bad.numel()} elements out of tolerance (worst err/tol {ratio:.3g}); first at {i}: "
            f"out={float(out.double()[i])!r} ref={float(ref[i])!r} tol={float(tol[i]):.3g} {msg}")
