"""Shared test setup: hypothesis profiles and the device the kernels run on.

Profiles (pick with --hypothesis-profile=NAME or TQK_HYPOTHESIS_PROFILE=NAME):
  ci        default: few examples, no deadline (the CPU suite runs kernels in Triton's interpreter)
  thorough  5x the examples, for a nightly or a change to a kernel
  gpu       for `pytest -m gpu` on a CUDA machine: many examples, larger shapes are cheap there
Property tests size their example counts from settings.default.max_examples, so a profile
scales the whole suite.
"""
import os

import pytest
from hypothesis import HealthCheck, settings

import tqk  # noqa: F401  (sets TRITON_INTERPRET=1 before any kernel is defined when there is no GPU)
import tqk.testing

_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture,
            HealthCheck.filter_too_much]
settings.register_profile("ci", max_examples=12, deadline=None, suppress_health_check=_SLOW_OK,
                          print_blob=True, derandomize=False)
settings.register_profile("thorough", max_examples=100, deadline=None, suppress_health_check=_SLOW_OK,
                          print_blob=True)
settings.register_profile("gpu", max_examples=200, deadline=None, suppress_health_check=_SLOW_OK,
                          print_blob=True)
settings.load_profile(os.environ.get("TQK_HYPOTHESIS_PROFILE", "ci"))


def pytest_configure(config):
    # Triton's interpreter (CPU runs) converts 1-element arrays to scalars, which numpy deprecates.
    config.addinivalue_line("filterwarnings", "ignore:Conversion of an array with ndim > 0:DeprecationWarning")
    # torch.compile on CPU, from inside torch.
    config.addinivalue_line("filterwarnings", "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")


@pytest.fixture
def device():
    """Where tensors live in device-agnostic tests: CUDA when present, else CPU (interpreter)."""
    return tqk.testing.default_device()


@pytest.fixture
def deterministic_kernels(monkeypatch):
    """split_k = 1 for every call through tqk's op, for tests that compare two runs bit for bit (eager
    vs compiled, saved vs loaded). Split-K adds its partials in a fixed order, but each split rounds
    its own float32 sum, and two runs can pick configs of different splits (a dynamic M takes its
    region's config, tqk.ops). (Kernel correctness with split-K is tested directly, in tests/layouts.)"""
    import dataclasses

    import tqk.ops

    select = tqk.ops.select_config
    monkeypatch.setattr(tqk.ops, "select_config",
                        lambda *args, **kwargs: dataclasses.replace(select(*args, **kwargs), split_k=1))


@pytest.fixture
def clear_tuning_caches():
    from tqk.kernels import scaled_mm, tuning

    def clear():
        tuning._select.cache_clear()
        scaled_mm._scaled_select.cache_clear()
        tuning._read_table.cache_clear()
        tuning.tuned_files.cache_clear()
    clear()
    yield
    clear()
