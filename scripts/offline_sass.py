"""Dev tool, no GPU needed: compile tqk's kernels for sm_90 offline and count the instructions of
their SASS, so a change to a kernel body can be checked (same code, or how much more) on a CPU
machine. Prints one line per case (a digest of its SASS: the same digest before and after a change
means the same code); with OUTDIR, writes each case's ptx and sass there.

    TRITON_INTERPRET=0 [ONLY=substring,...] [INDUCTOR=1] python scripts/offline_sass.py [OUTDIR]

INDUCTOR=1 compiles each kernel from the source torch.compile generates for it instead: inductor copies
a user kernel and the helpers it calls, by name, into a module of its own and compiles that in a
subprocess, so a helper that reaches its module's other names (`packing.f`) compiles here but fails
there (tests/kernels/test_inductor_source.py).
"""
import collections
import functools
import hashlib
import importlib.util
import os
import re
import sys
import tempfile

os.environ["TRITON_INTERPRET"] = "0"  # before tqk: compile, don't interpret

from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource, compile  # noqa: E402
from triton.tools.disasm import get_sass  # noqa: E402

import tqk  # noqa: E402,F401
from tqk.kernels import scaled_mm as sm  # noqa: E402
from tqk.kernels import weight_only as wo  # noqa: E402
from tqk.layouts import (AffineLayout, CodebookLayout, Float8Layout, FpxLayout, MXLayout, NVFP4Layout,  # noqa: E402
                         ScaledLayout)

TARGET = GPUTarget("cuda", 90, 32)
INDUCTOR = os.environ.get("INDUCTOR") == "1"


@functools.cache
def inductor_copy(kernel):
    """The kernel rebuilt from inductor's copy of its source and its helpers' (what a compiled model
    launches), in a fresh module that sees nothing of tqk's."""
    from torch._inductor.codegen.wrapper import user_defined_triton_kernel_transitive_closure_source_code

    src = user_defined_triton_kernel_transitive_closure_source_code(kernel)
    path = os.path.join(tempfile.mkdtemp(), f"inductor_{kernel.__name__}.py")
    with open(path, "w") as fh:  # Triton reads a kernel's source from its file
        fh.write("import triton\nimport triton.language as tl\n\n\n@triton.jit\n" + src)
    spec = importlib.util.spec_from_file_location(f"inductor_{kernel.__name__}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, kernel.__name__)


def source(kernel):
    return inductor_copy(kernel) if INDUCTOR else kernel

POINTERS = {"x_ptr": "*bf16", "w_ptr": "*i32", "scale_ptr": "*bf16", "zero_ptr": "*bf16", "bias_ptr": "*bf16",
            "out_ptr": "*bf16", "part_ptr": "*fp32", "count_ptr": "*i32", "table_ptr": "*bf16"}


def build(kernel, fmt, **switches):
    defaults = {"WIDE": False, "BIASED": False} if kernel is wo.weight_only_gemv_kernel else {}
    switches = {**defaults, "STORED": False, **switches}
    warps = switches.pop("num_warps", 4)
    consts = dict(fmt.constexprs(), HAS_BIAS=False, PTX=True, **switches)
    # STORED: a QuantizedLinear's one int32 buffer stands for scales, zero points and table (tqk/layouts/storage.py)
    pointers = dict(POINTERS, **({n: "constexpr" for n in ("scale_ptr", "zero_ptr", "table_ptr")}
                                 if switches["STORED"] else {}))
    sig = {name: pointers.get(name, "constexpr" if name in consts else "i32") for name in kernel.arg_names}
    if switches["STORED"]:  # the launcher passes None for them, which Triton makes constants
        consts.update(scale_ptr=None, zero_ptr=None, table_ptr=None)
    consts = {name: value for name, value in consts.items() if name in sig}
    # the launcher's specialization: pointers 16-byte aligned, sizes multiples of 16
    divisible = [i for i, name in enumerate(kernel.arg_names) if sig[name] != "constexpr"
                 and name not in ("M", "trips_per_split", "num_tiles")]
    attrs = {(i,): [["tt.divisibility", 16]] for i in divisible}
    return compile(ASTSource(kernel, sig, consts, attrs), target=TARGET,
                   options=dict(num_warps=warps, num_stages=2))


def build_scaled(layout: ScaledLayout, block_m: int, block_n: int, num_warps: int, prologue: bool = False,
                 split_k: int = 1):
    """The activation-quantized GEMM for one ScaledLayout (a *MMA / *GMMA count shows the tensor cores);
    prologue: reading bf16 activations and quantizing them itself."""
    fmt, kernel = layout.scaled_format(), source(sm.scaled_mm_kernel)
    codes = {"int8": "*i8", "f16": "*fp16"}.get(fmt.act, "*u8")
    byte_scales = fmt.w_scale in ("e8m0", "e4m3")  # MX / NVFP4
    pointers = {"a_ptr": "*bf16" if prologue else codes, "a_scale_ptr": "*u8" if fmt.a_scale == "e8m0" else "*fp32",
                "w_ptr": "*i8" if fmt.weight == "int8" else "*u8", "w_scale_ptr": "*u8" if byte_scales else "*bf16",
                "w_zero_ptr": "*fp32" if byte_scales else "*bf16",
                "bias_ptr": "*bf16", "out_ptr": "*bf16", "part_ptr": "*fp32", "count_ptr": "*i32"}
    consts = dict(ACT=fmt.act, WEIGHT=fmt.weight, A_SCALE=fmt.a_scale, W_SCALE=fmt.w_scale, HAS_BIAS=True,
                  QUANTIZE_A=prologue, DOT_F32=False, EVEN_K=True, EVEN_N=True, BLOCK_M=block_m, BLOCK_N=block_n,
                  BLOCK_K=fmt.group if fmt.k_steps else 128, GROUP_M=8, SPLIT_K=split_k,
                  LATE_SCALE=os.environ.get("LATE_SCALE") == "1", SWAP_AB=os.environ.get("SWAP_AB") == "1")
    sig = {name: pointers.get(name, "constexpr" if name in consts else "i32") for name in kernel.arg_names}
    attrs = {(i,): [["tt.divisibility", 16]] for i, name in enumerate(kernel.arg_names)
             if sig[name] != "constexpr" and name != "M"}
    return compile(ASTSource(kernel, sig, consts, attrs), target=TARGET, options=dict(num_warps=num_warps, num_stages=3))


def count(sass: str) -> collections.Counter:
    """Opcodes of get_sass's listing: one instruction per line, after the control code and a tab."""
    return collections.Counter(re.findall(r"^\S+\t(?:@!?U?P\w+\s+)?([A-Z0-9]+)", sass, re.M))


def loop_instructions(sass: str) -> int:
    """Instructions of the largest loop (a label up to a branch back to it): the main loop's body, once."""
    lines = sass.splitlines()
    labels = {m.group(1): i for i, line in enumerate(lines) if (m := re.match(r"^(\w+):$", line))}
    best = 0
    for i, line in enumerate(lines):
        m = re.search(r"\bBRA\s+(\w+)", line)
        if m and labels.get(m.group(1), i) < i:
            best = max(best, sum(bool(re.match(r"^\S+\t", x)) for x in lines[labels[m.group(1)]:i + 1]))
    return best


CASES = {
    "int4_g128_gemv_split": (wo.weight_only_gemv_kernel, AffineLayout(128, 4).weight_format(),
                             dict(BLOCK_N=64, SPLIT_K=4, EVEN_K=True, TRIP_BLOCKS=2, ADJACENT_SPLITS=False)),
    "int4_g128_gemv_biased": (wo.weight_only_gemv_kernel, AffineLayout(128, 4).weight_format(),
                              dict(BLOCK_N=64, SPLIT_K=1, EVEN_K=True, TRIP_BLOCKS=2, ADJACENT_SPLITS=False,
                                   BIASED=True)),
    "int8_row_gemv_wide": (wo.weight_only_gemv_kernel, AffineLayout(0, 8, symmetric=True).weight_format(),
                           dict(BLOCK_N=16, SPLIT_K=2, EVEN_K=True, TRIP_BLOCKS=4, ADJACENT_SPLITS=True, WIDE=True)),
    "fp8_row_gemv": (wo.weight_only_gemv_kernel, Float8Layout(0).weight_format(),
                     dict(BLOCK_N=32, SPLIT_K=1, EVEN_K=True, TRIP_BLOCKS=2, ADJACENT_SPLITS=False)),
    "int4_g128_gemm_split": (wo.weight_only_gemm_kernel, AffineLayout(128, 4).weight_format(),
                             dict(BLOCK_N=64, BLOCK_M=16, SPLIT_K=4, GROUP_N=8, ONE_DOT=False, BLOCK_SCALE=False,
                                  DOT_F32=False, EVEN_K=True)),
    "fp6_e3m2_row_gemv": (wo.weight_only_gemv_kernel, FpxLayout(0, 3, 2).weight_format(),
                          dict(BLOCK_N=32, SPLIT_K=1, EVEN_K=True, TRIP_BLOCKS=2, ADJACENT_SPLITS=False)),
    "fp4_e2m1_g32_gemm": (wo.weight_only_gemm_kernel, FpxLayout(32, 2, 1).weight_format(),
                          dict(BLOCK_N=64, BLOCK_M=16, SPLIT_K=1, GROUP_N=8, ONE_DOT=False, BLOCK_SCALE=False,
                               DOT_F32=False, EVEN_K=True)),
    "int8_row_gemm": (wo.weight_only_gemm_kernel, AffineLayout(0, 8, symmetric=True).weight_format(),
                      dict(BLOCK_N=128, BLOCK_M=128, SPLIT_K=1, GROUP_N=8, ONE_DOT=True, BLOCK_SCALE=False,
                           DOT_F32=False, EVEN_K=True, num_warps=8)),
}
# Dense widths (3, 5, 6, 7 bits: slices of 4, 2, 1 bits) beside 4 and 8 bits at the same tiles
_GEMV_SPLIT = dict(BLOCK_N=64, SPLIT_K=4, EVEN_K=True, TRIP_BLOCKS=2, ADJACENT_SPLITS=False)
_GEMM_SPLIT = dict(BLOCK_N=64, BLOCK_M=16, SPLIT_K=4, GROUP_N=8, ONE_DOT=False, BLOCK_SCALE=False, DOT_F32=False,
                   EVEN_K=True)
_GEMV_ROW = dict(BLOCK_N=32, SPLIT_K=1, EVEN_K=True, TRIP_BLOCKS=2, ADJACENT_SPLITS=False)
for _bits in (3, 5, 6, 7, 8):
    CASES[f"uint{_bits}_g128_gemv_split"] = (wo.weight_only_gemv_kernel, AffineLayout(128, _bits).weight_format(),
                                             _GEMV_SPLIT)
    CASES[f"uint{_bits}_g128_gemm_split"] = (wo.weight_only_gemm_kernel, AffineLayout(128, _bits).weight_format(),
                                             _GEMM_SPLIT)
for _bits in (4, 8):
    CASES[f"uint{_bits}_row_gemv"] = (wo.weight_only_gemv_kernel,
                                      AffineLayout(0, _bits, symmetric=True).weight_format(), _GEMV_ROW)
CASES["fp5_e2m2_row_gemv"] = (wo.weight_only_gemv_kernel, FpxLayout(0, 2, 2).weight_format(), _GEMV_ROW)
# a table in registers (codebooks) and byte scales (MX: E8M0 per 32, NVFP4: e4m3 per 16)
for _name, _layout in (("lut4_row", CodebookLayout(nbits=4)), ("lut8_g32", CodebookLayout(32, nbits=8)),
                       ("lut8v2_row", CodebookLayout(nbits=8, vector_size=2)),  # vector codes: pairs, quads
                       ("lut4v4_g64", CodebookLayout(64, nbits=4, vector_size=4)),
                       ("mxfp4", MXLayout()), ("mxfp8", MXLayout(element="e4m3")), ("nvfp4", NVFP4Layout())):
    CASES[f"{_name}_gemv_split"] = (wo.weight_only_gemv_kernel, _layout.weight_format(), _GEMV_SPLIT)
    CASES[f"{_name}_gemv_row"] = (wo.weight_only_gemv_kernel, _layout.weight_format(), _GEMV_ROW)
    CASES[f"{_name}_gemm_split"] = (wo.weight_only_gemm_kernel, _layout.weight_format(), _GEMM_SPLIT)

# the kernels reading a QuantizedLinear's one buffer: float scales with and without zero points, byte scales and NVFP4's
# float32 tensor scale, a table
for _name in ("int4_g128_gemv_biased", "uint8_row_gemv", "fp8_row_gemv", "uint3_g128_gemm_split", "nvfp4_gemv_split",
              "lut8_g32_gemv_split"):
    _kernel, _fmt, _switches = CASES[_name]
    CASES[_name + "_stored"] = (_kernel, _fmt, dict(_switches, STORED=True))


def all_cases():
    for name, (kernel, fmt, switches) in CASES.items():
        yield name, lambda: build(kernel, fmt, **switches)
    for i, layout in enumerate(ScaledLayout.examples()):
        f = layout.scaled_format()
        for bm, bn, warps, prologue, split in ((16, 64, 4, False, 1), (128, 128, 8, False, 1), (16, 64, 4, True, 1),
                                               (128, 128, 8, True, 1), (16, 64, 4, True, 4)):
            if prologue and not layout.takes_prologue:  # MX / NVFP4: the codes path only
                prologue = False
                if split == 1:
                    continue
            name = f"scaled{i}_{f.act}x{f.weight}_{f.a_scale}_{f.w_scale}{f.group or ''}_{bm}x{bn}" + \
                ("_prologue" if prologue else "") + (f"_split{split}" if split > 1 else "")
            yield name, lambda: build_scaled(layout, bm, bn, warps, prologue, split)


if __name__ == "__main__":
    out_dir = sys.argv[1] if len(sys.argv) > 1 else None
    only = os.environ.get("ONLY", "").split(",")  # substrings of the case names to build
    for name, make in all_cases():
        if not any(part in name for part in only):
            continue
        compiled = make()
        sass = get_sass(compiled.asm["cubin"])  # the cuobjdump that ships with Triton
        compiled.asm["sass"] = sass
        ops = count(sass)
        top = ", ".join(f"{op}:{n}" for op, n in ops.most_common(8))
        digest = hashlib.sha1(sass.encode()).hexdigest()[:12]  # equal digests: byte-identical SASS
        print(f"{name:40s} sass {digest} instructions={sum(ops.values())} loop={loop_instructions(sass)} "
              f"shared={compiled.metadata.shared} | {top}")
        if out_dir:
            for ext in ("ptx", "sass"):
                with open(os.path.join(out_dir, f"{name}.{ext}"), "w") as fh:
                    fh.write(compiled.asm.get(ext, ""))
