"""Layouts: the bytes each kernel reads. Add a format by adding a file with a registered
Layout subclass; tests/layouts iterates LAYOUTS, so it is property-tested at once."""
from .affine import AffineLayout
from .base import LAYOUTS, Layout, register_layout
from .codebook import CodebookLayout
from .float8 import Float8Layout
from .fpx import FpxLayout
from .mx import MXLayout, NVFP4Layout
from .packing import codes_per_word, pack_planes, unpack_planes
from .scaled import ScaledLayout

__all__ = ["LAYOUTS", "Layout", "register_layout", "AffineLayout", "CodebookLayout", "Float8Layout", "FpxLayout",
           "MXLayout", "NVFP4Layout", "ScaledLayout", "codes_per_word", "pack_planes", "unpack_planes"]
