"""check_layout: the shared properties, as one call, for a kernel developer's own layout.

    from tqk.testing import check_layout
    check_layout(MyLayout(group_size=64))     # raises AssertionError naming the property that fails

What it checks, on fresh seeded inputs (the same properties tests/layouts runs for every
registered weight-only layout):
  1. pack and unpack are exact inverses, bit for bit, on random valid codes of odd shapes, and the
     words follow the documented bit-plane order (tqk.testing.unpack_reference);
  2. the kernel (GEMV and GEMM paths: M = 1, 7 and 40) against the float64 reference of
     dequantize(W) @ x + bias, for every standard weight distribution and random codes;
  3. torch.compile(fullgraph=True) of a model holding the layer (no graph break) equals eager;
  4. state_dict round trip through torch.save and torch.load(weights_only=True).
"""
from __future__ import annotations

import io

import torch
from torch import nn

from . import testing as T
from .layouts.base import Layout
from .linear import QuantizedLinear


def check_layout(layout: Layout, *, device=None, seed: int = 0, dtypes=(torch.bfloat16, torch.float16)) -> None:
    if layout.family != "weight_only":
        raise ValueError(f"check_layout takes weight-only layouts; {type(layout).__name__} is {layout.family!r}")
    hash(layout)  # a layout is a compile-time constant
    device = torch.device(device) if device is not None else T.default_device()
    fmt = layout.weight_format()
    group = layout.k_multiple()  # the group, or a code's features (vector codes)
    v = fmt.vector_size
    g = torch.Generator().manual_seed(seed)
    # 1. pack / unpack (codes [N, K / v])
    allowed = T.valid_codes(fmt.element, fmt.bits)
    for n, k in ((1, group), (7, 3 * group), (33, 5 * group + (0 if layout.group_size else 17 * v))):
        codes = allowed[torch.randint(0, allowed.numel(), (n, k // v), generator=g)]
        packed = layout.pack(codes)
        assert torch.equal(layout.unpack(packed, k), codes), f"{layout}: unpack(pack(codes)) != codes ({n}x{k})"
        assert torch.equal(T.unpack_reference(packed, fmt.bits, fmt.span, k // v), codes), \
            f"{layout}: the packed words do not follow the bit-plane order of tqk/layouts/packing.py"
    # 2. the kernel against float64
    k = max(2, 256 // group) * group
    for i, dist in enumerate(T.DISTRIBUTIONS + ("random_codes",)):
        dtype = dtypes[i % len(dtypes)]
        if dist == "random_codes":
            qw = T.random_codes_weight(layout, 72, k, dtype, seed + i, device)
        else:
            qw = T.quantize_for_layout(T.make_weight((72, k), dtype, dist, seed + i, device), layout)
        w_max = float(T.dequantize_reference(qw).abs().max())
        for m in (1, 7, 40):
            x = (torch.randn(m, k, generator=g) * T.input_scale_for(w_max, k, dtype)).to(dtype).to(device)
            bias = torch.randn(72, generator=g).to(dtype).to(device)
            T.assert_close_to_reference(qw.linear(x, bias), T.reference_linear(x, qw, bias), x=x, weight=qw, bias=bias,
                                        msg=f"{layout}, {dist}, {dtype}, M={m}")
    # 3. compile, 4. weights_only round trip
    model = nn.Sequential(nn.Linear(k, 72, dtype=torch.bfloat16, device=device))
    QuantizedLinear.convert_(model[0], T.quantize_for_layout(T.make_weight((72, k), torch.bfloat16, "normal", seed,
                                                                           device), layout))
    x = torch.randn(5, k, generator=g).to(torch.bfloat16).to(device)
    torch._dynamo.reset()
    with torch.no_grad():
        compiled = torch.compile(model, fullgraph=True)(x)
        eager = model(x)
    torch._dynamo.reset()
    assert torch.allclose(compiled.float(), eager.float(), rtol=2**-6, atol=1e-3 * float(eager.abs().max())), \
        f"{layout}: the compiled layer differs from eager"
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)  # register_layout allow-lists the layout's class
    assert state["0.weight"].quant_layout == layout and torch.equal(state["0.weight"].packed, model[0].packed), \
        f"{layout}: the state_dict does not round-trip through torch.load(weights_only=True)"
