"""tqk.ops: which op form runs where, and how a dynamic M picks its config while tracing."""
from __future__ import annotations

import torch

from tqk import ops
from tqk.kernels.weight_only import interpreting


def test_op_form_follows_the_backend():
    """A custom_op under Triton's interpreter (triton_op cannot run inside inductor there), a
    triton_op on GPUs (inductor launches the kernel from its generated code)."""
    from torch._library.custom_ops import CustomOpDef
    assert isinstance(ops.weight_only_linear, CustomOpDef)
    assert (ops._WRAP is None) == interpreting()


def test_static_m_is_its_own_bucket():
    assert [ops._config_m(m) for m in (1, 2, 3, 17, 5000)] == [1, 2, 3, 17, 5000]


def _symbolic_m(hint: int):
    """M as inductor sees it while tracing a triton_op's body with dynamic shapes."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv, StatelessSymbolicContext

    env = ShapeEnv()
    ctx = StatelessSymbolicContext(dynamic_sizes=[DimDynamic.DYNAMIC, DimDynamic.STATIC])
    x = FakeTensorMode(shape_env=env).from_tensor(torch.ones(hint, 4), symbolic_context=ctx)
    return x.shape[0], env


def test_dynamic_m_takes_its_regions_config_under_one_guard():
    """Traced with a symbolic M, the config comes from M's region through one guard on the region's
    bound, never from M's value: a graph serves the whole region, and M varies without a recompile
    per value (at most one compile per region)."""
    for hint, want in ((2, 16), (33, 16), (64, 16), (65, 2048), (4000, 2048)):
        m, env = _symbolic_m(hint)
        assert isinstance(m, torch.SymInt)
        assert ops._config_m(m) == want
        guards = [str(g.expr) for g in env.guards]
        assert len(guards) == 1 and "64" in guards[0], guards
