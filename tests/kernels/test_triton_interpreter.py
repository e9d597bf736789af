"""Bugs of Triton's interpreter (TRITON_INTERPRET=1, how the CPU suite runs the kernels) that tqk
works around or that its tests step around, each shown by a tiny kernel against the right answer.

Each is a strict xfail where the bug is (under the interpreter, and for a version where only that
version has it): a Triton release that fixes one makes its test pass, the suite fails, and the
workaround it names can go. Compiled, on a GPU, they are plain tests that pass.
"""
from __future__ import annotations

import pytest
import torch
import triton
import triton.language as tl

import tqk  # noqa: F401  (TRITON_INTERPRET=1 on CPU, before the kernels below are defined)
from tqk import testing as T

DEVICE = T.default_device()
INTERPRETED = DEVICE.type == "cpu"
TRITON = tuple(int(part) for part in triton.__version__.split(".")[:2])


@triton.jit
def _masked_copy_kernel(x_ptr, out_ptr, n, limit, SCALAR_ONLY: tl.constexpr, BLOCK: tl.constexpr):
    i = tl.arange(0, BLOCK)
    in_range = tl.program_id(0) < limit  # a scalar comparison
    mask = in_range if SCALAR_ONLY else (i < n) & in_range
    tl.store(out_ptr + i, tl.load(x_ptr + i, mask=mask, other=-1), mask=i < n)


@pytest.mark.xfail(INTERPRETED and TRITON >= (3, 9), strict=True,
                   reason="Triton 3.9's interpreter: 'mask has unsupported dtype'. A scalar comparison is "
                          "typed as its int32 operands, so broadcast into a load's mask it makes an int32 "
                          "mask, which 3.9's tl.load rejects (3.6's takes it). tqk's kernels build such "
                          "masks with _rows_and (tqk/kernels/weight_only.py) or from a tensor comparison.")
@pytest.mark.parametrize("scalar_only", [False, True], ids=["tensor-and-scalar", "scalar"])
def test_scalar_comparison_in_a_load_mask(scalar_only):
    x = torch.arange(16, dtype=torch.int32, device=DEVICE)
    for limit, want in ((1, x), (0, torch.full_like(x, -1))):
        out = torch.empty_like(x)
        _masked_copy_kernel[(1,)](x, out, 16, limit, SCALAR_ONLY=scalar_only, BLOCK=16)
        assert torch.equal(out, want)


@triton.jit
def _to_fp8_kernel(x_ptr, out_ptr, n, E4M3: tl.constexpr, BLOCK: tl.constexpr):
    i = tl.arange(0, BLOCK)
    x = tl.load(x_ptr + i, mask=i < n, other=0.0)
    fp8 = x.to(tl.float8e4nv) if E4M3 else x.to(tl.float8e5)
    tl.store(out_ptr + i, fp8.to(tl.uint8, bitcast=True), mask=i < n)


@pytest.mark.xfail(INTERPRETED, strict=True,
                   reason="Triton's interpreter (3.6 and 3.9 alike) casts float32 to fp8 wrongly: a tie rounds "
                          "away from zero, not to even, and a value that rounds up into the next binade "
                          "loses the carry (e4m3 124.0 -> 64.0, not 128.0). tqk's quantizers encode fp8 "
                          "with torch's casts; no tqk kernel encodes fp8.")
@pytest.mark.parametrize("fp8,tie,carry", [(torch.float8_e4m3fn, 1.0625, 124.0), (torch.float8_e5m2, 1.125, 30720.0)],
                         ids=["e4m3", "e5m2"])
def test_float32_to_fp8_cast_rounds_like_torch(fp8, tie, carry):
    x = torch.tensor([1.0, -2.5, tie, -tie, carry, -carry], device=DEVICE)
    out = torch.empty(x.numel(), dtype=torch.uint8, device=DEVICE)
    _to_fp8_kernel[(1,)](x, out, x.numel(), E4M3=fp8 == torch.float8_e4m3fn, BLOCK=8)
    assert out.view(fp8).float().cpu().tolist() == x.to(fp8).float().cpu().tolist()
