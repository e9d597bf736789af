"""Config selection: M buckets, the heuristic, and the JSON table of tuned configs."""
from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tqk.kernels import tuning
from tqk.kernels.tuning import M_BUCKETS, GpuTraits, KernelConfig, heuristic, m_bucket, select_config, table_key

POW2 = {1 << i for i in range(12)}


@given(st.integers(1, 10_000))
def test_m_bucket_is_the_smallest_bucket_holding_m(m):
    b = m_bucket(m)
    assert b in M_BUCKETS
    if m <= M_BUCKETS[-1]:
        assert b >= m
        smaller = [x for x in M_BUCKETS if x < b]
        assert not smaller or smaller[-1] < m
    else:
        assert b == M_BUCKETS[-1]


def test_m_buckets_literal():
    assert [m_bucket(m) for m in (1, 2, 3, 5, 16, 17, 100, 4096, 5000)] == [1, 2, 4, 8, 16, 32, 128, 4096, 4096]


def _valid(cfg: KernelConfig, m: int):
    assert cfg.kernel in ("gemv", "gemm")
    assert cfg.block_n in POW2 and cfg.block_m in POW2
    assert cfg.split_k >= 1 and cfg.num_warps in (1, 2, 4, 8, 16) and cfg.num_stages >= 1
    if cfg.kernel == "gemm":  # tl.dot needs every tile dim >= 16
        assert cfg.block_n >= 16 and cfg.block_m >= 16


@given(n=st.integers(1, 65536), k=st.integers(1, 65536), m=st.sampled_from(M_BUCKETS), interpreted=st.booleans())
def test_heuristic_gives_valid_configs(n, k, m, interpreted):
    cfg = heuristic(n, k, m, interpreted=interpreted)
    _valid(cfg, m)
    # decode (M <= 2) streams the weight with the gemv kernel; larger M uses tensor cores
    assert (cfg.kernel == "gemv") == (m <= 2)
    if cfg.kernel == "gemm" and m <= 64:
        assert cfg.block_m >= min(m, 16)


def test_select_config_on_cpu_uses_the_interpreter_heuristic(clear_tuning_caches):
    for m in (1, 3, 40, 1000):
        cfg = select_config("uint4_g128_tensor", 300, 256, m, torch.device("cpu"))
        assert cfg == heuristic(300, 256, m_bucket(m), interpreted=True)


def test_table_key_and_results_file_names():
    assert table_key("uint4_g128_tensor", 4096, 11008, 3) == "uint4_g128_tensor:4096x11008:m4"
    assert tuning.results_file("NVIDIA H100 80GB HBM3").name == "NVIDIA_H100_80GB_HBM3.json"


@pytest.mark.parametrize("fields, problem", [(dict(kernel="gemx", block_n=32), "kernel"),
                                             (dict(kernel="gemv", block_n=32, trip_blocks=3), "trip_blocks"),
                                             (dict(kernel="gemv", block_n=32, trip_blocks=4), "trip_blocks"),
                                             (dict(kernel="gemv", block_n=32, trip_blocks=1, wide=True), "trip_blocks"),
                                             (dict(kernel="gemv", block_n=32, trip_blocks=6, wide=True), "trip_blocks"),
                                             (dict(kernel="gemv", block_n=32, trip_blocks=4, wide=True, biased=True),
                                              "biased")])
def test_kernel_config_rejects_what_no_kernel_runs(fields, problem):
    # trip_blocks=3 would otherwise step past blocks it never decodes: a wrong answer, not a crash
    with pytest.raises(ValueError, match=problem):
        KernelConfig(**fields)


def test_tuned_table_from_autotune_dir(tmp_path, monkeypatch, clear_tuning_caches):
    device = GpuTraits("Fake GPU 9000 (test)", (9, 0), 132)
    tuned = KernelConfig("gemm", block_n=32, block_m=16, split_k=4, group_n=4, num_warps=2, num_stages=3)
    gemv = KernelConfig("gemv", block_n=8, num_warps=1, num_stages=5)
    (tmp_path / "Fake_GPU_9000_test.json").write_text(json.dumps({"configs": {
        table_key("uint4_g128_tensor", 512, 1024, 16): tuned.to_json(),
        table_key("e4m3_8_row_none", 512, 1024, 1): gemv.to_json(),
    }}))
    monkeypatch.setenv("TQK_AUTOTUNE_DIR", str(tmp_path))
    assert tuning.results_dir() == tmp_path
    assert tuning.results_file(device.name) == tmp_path / "Fake_GPU_9000_test.json"
    # Every M in the bucket gets the tuned entry ...
    for m in (9, 12, 16):
        assert tuning._select("uint4_g128_tensor", 512, 1024, m_bucket(m), device) == tuned
    assert tuning._select("e4m3_8_row_none", 512, 1024, 1, device) == gemv
    # ... and anything not in the table the (GPU) heuristic.
    assert tuning._select("uint4_g128_tensor", 512, 1024, 32, device) == heuristic(512, 1024, 32)
    assert tuning._select("uint4_g32_tensor", 512, 1024, 16, device) == heuristic(512, 1024, 16)
    assert tuning._select("uint4_g128_tensor", 512, 2048, 16, device) == heuristic(512, 2048, 16)


def test_missing_table_means_heuristic(tmp_path, monkeypatch, clear_tuning_caches):
    monkeypatch.setenv("TQK_AUTOTUNE_DIR", str(tmp_path / "nothing here"))
    gpu = GpuTraits("Some GPU", (9, 0), 132)
    assert tuning.tuned_files(gpu) == ()
    assert tuning._select("uint8_row_offset", 64, 64, 4, gpu) == heuristic(64, 64, 4)


def test_table_is_read_once_per_device(tmp_path, monkeypatch, clear_tuning_caches):
    """The file is read once per process and device (lru_cache): no file system on the hot path."""
    monkeypatch.setenv("TQK_AUTOTUNE_DIR", str(tmp_path))
    path = tmp_path / "GPU_A.json"
    first = KernelConfig("gemm", 64, 16)
    path.write_text(json.dumps({"configs": {table_key("k", 64, 64, 16): first.to_json()}}))
    gpu = GpuTraits("GPU A", (8, 0), 108)
    assert tuning._select("k", 64, 64, 16, gpu) == first
    path.write_text(json.dumps({"configs": {table_key("k", 64, 64, 16): KernelConfig("gemm", 16, 16).to_json()}}))
    assert tuning._select("k", 64, 64, 16, gpu) == first
    tuning._select.cache_clear()
    tuning._read_table.cache_clear()
    assert tuning._select("k", 64, 64, 16, gpu) == KernelConfig("gemm", 16, 16)


def test_siblings_tables_fill_in_for_shapes_a_gpu_has_not_tuned(tmp_path, monkeypatch, clear_tuning_caches):
    """A GPU with no entry for a shape takes the entry of a GPU with the same compute capability and
    multiprocessor count (an H200 reads the H100's file), its own entries first."""
    monkeypatch.setenv("TQK_AUTOTUNE_DIR", str(tmp_path))
    older, own, other_arch = (KernelConfig("gemm", 64, 16), KernelConfig("gemm", 32, 16), KernelConfig("gemm", 16, 16))

    def write(name, traits, configs):
        meta = GpuTraits(name, *traits).to_json() if traits else {}
        tuning.results_file(name).write_text(json.dumps(dict(meta, configs={
            table_key(f, 64, 64, 16): c.to_json() for f, c in configs.items()})))
    write("Hopper One", ((9, 0), 132), {"a": older, "b": older})
    write("Hopper Two", ((9, 0), 132), {"b": own})
    write("Hopper Small", ((9, 0), 114), {"c": other_arch})
    write("Ampere", ((8, 0), 132), {"c": other_arch})
    write("Unlabelled", None, {"c": other_arch})
    gpu = GpuTraits("Hopper Two", (9, 0), 132)
    assert [p.name for p in tuning.tuned_files(gpu)] == ["Hopper_Two.json", "Hopper_One.json"]
    assert tuning._select("a", 64, 64, 16, gpu) == older  # only the sibling has it
    assert tuning._select("b", 64, 64, 16, gpu) == own  # its own file first
    assert tuning._select("c", 64, 64, 16, gpu) == heuristic(64, 64, 16)  # other chips never count
    # a GPU with no file of its own still reads its siblings'
    assert tuning._select("b", 64, 64, 16, GpuTraits("Hopper Three", (9, 0), 132)) == older


def test_shipped_tables_say_which_gpus_they_suit():
    """Every file in autotune_results/ names its capability and SM count, so siblings can find it."""
    files = sorted(tuning.results_dir().glob("*.json"))
    assert files
    for path in files:
        meta = json.loads(path.read_text())
        assert len(meta["capability"]) == 2 and meta["multiprocessors"] > 0, path.name
        assert tuning.results_file(meta["device"]) == path


@pytest.mark.parametrize("m", [0, 1, 2, 3, 17])
def test_op_picks_kernel_by_m_and_handles_empty_input(m):
    """tqk::weight_only_linear on CPU: M = 0 gives an empty output, other M go through the
    heuristic's kernel; both agree with the float64 reference."""
    import tqk
    from tqk import testing as T

    lin = torch.nn.Linear(64, 24, dtype=torch.bfloat16, device=T.default_device())
    tqk.quantize_(lin, tqk.Int8WeightOnlyConfig())
    x = torch.randn(m, 64, dtype=torch.bfloat16, device=T.default_device())
    out = lin(x)
    assert out.shape == (m, 24)
    T.assert_close_to_reference(out, T.reference_linear(x, lin.weight, lin.bias), x=x, weight=lin.weight,
                                bias=lin.bias)


# ------------------------------------------------------------------------------------------
# The scaled GEMM (tqk/kernels/scaled_mm.py): its entries in the same files, and its tuner
# ------------------------------------------------------------------------------------------
def test_scaled_configs_from_the_table(tmp_path, monkeypatch, clear_tuning_caches):
    """Scaled entries share the file with weight-only ones, keyed by format and path (prologue apart from
    codes); a shape, bucket or path not in it gets scaled_heuristic; on the CPU the interpreter's."""
    from tqk.kernels import scaled_mm as sm
    from tqk.layouts import ScaledLayout

    fmt = ScaledLayout(act="e4m3", weight="e4m3").scaled_format()
    gpu = GpuTraits("Fake GPU 9000 (test)", (9, 0), 132)
    prologue = sm.ScaledConfig(16, 32, 256, num_warps=4, num_stages=5, split_k=4)
    codes = sm.ScaledConfig(128, 256, 128, num_warps=8, num_stages=4)
    weight_only = KernelConfig("gemm", block_n=32, block_m=16)
    (tmp_path / "Fake_GPU_9000_test.json").write_text(json.dumps(dict(gpu.to_json(), configs={
        table_key(sm.scaled_table_key(fmt, True), 512, 1024, 16): prologue.to_json(),
        table_key(sm.scaled_table_key(fmt, False), 512, 1024, 2048): codes.to_json(),
        table_key("uint4_g128_tensor", 512, 1024, 16): weight_only.to_json()})))
    monkeypatch.setenv("TQK_AUTOTUNE_DIR", str(tmp_path))
    assert sm.scaled_table_key(fmt, True) == "scaled_e4m3_row_e4m3_row_prologue"
    for m in (9, 16):
        assert sm._scaled_select(fmt, 512, 1024, m_bucket(m), True, gpu) == prologue
    assert sm._scaled_select(fmt, 512, 1024, 16, False, gpu) == sm.scaled_heuristic(fmt, 16, 512, 1024)
    assert sm._scaled_select(fmt, 512, 1024, 2048, False, gpu) == codes
    assert sm._scaled_select(fmt, 512, 2048, 2048, False, gpu) == sm.scaled_heuristic(fmt, 2048, 512, 2048)
    assert tuning._select("uint4_g128_tensor", 512, 1024, 16, gpu) == weight_only
    assert sm.scaled_config(fmt, 16, 512, 1024, True, torch.device("cpu")) == \
        sm.scaled_heuristic(fmt, 16, 512, 1024, interpreted=True)


@pytest.mark.parametrize("m", [1, 16, 64, 2048])
def test_scaled_heuristic_and_candidates_are_runnable(m):
    """Every tile the heuristic or the tuner's search space gives: dot sides >= 16, BLOCK_K the scale
    step where scales change along K, split-K only for small M (it needs the layer's counters)."""
    from tqk.kernels import scaled_mm as sm
    from tqk.layouts import ScaledLayout
    from tqk.tune import scaled_candidates

    for layout in ScaledLayout.examples():
        fmt = layout.scaled_format()
        for n, k in ((4096, 4096), (28672, 4096), (4096, 14336), (100, 384)):
            for cfg in scaled_candidates(fmt, m) + [sm.scaled_heuristic(fmt, m, n, k)]:
                assert min(cfg.block_m, cfg.block_n, cfg.block_k) >= 16 and cfg.block_m >= min(m, 16)
                assert {cfg.block_m, cfg.block_n, cfg.block_k} <= POW2 | {256}
                assert cfg.block_k == fmt.group if fmt.k_steps else cfg.block_k in (128, 256)
                assert cfg.split_k == 1 or m <= sm.PROLOGUE_MAX_M


def test_tune_scaled_writes_entries_the_selection_reads(clear_tuning_caches):
    """The scaled tuner on a tiny shape through the interpreter (the timing faked: each call runs once):
    one entry per (format, path, M bucket), under the key scaled_config looks up, each a candidate."""
    import argparse

    import tqk.tune as tune
    from tqk.kernels import scaled_mm as sm

    args = argparse.Namespace(shapes=["48x256"], m=[1], formats=["int8dq", "w4a8-fp8"], act_quant="both", jobs=1)
    table, written = {"configs": {}}, []
    args.write = lambda t: written.append(len(t["configs"]))
    times = iter(range(10_000))

    def bench(calls, x, settle_s=0.1):
        for call in calls:
            assert call(x).shape == (x.shape[0], 48)
        return 1.0 + next(times) % 5

    rows = tune.tune_scaled(args, torch.device("cpu"), table, bench, lambda w, x: 1.0)
    assert len(rows) == 4 and written == [4]
    for fname in args.formats:
        fmt = tune.SCALED_FORMATS[fname].layout().scaled_format()
        for prologue in (True, False):
            entry = table["configs"][table_key(sm.scaled_table_key(fmt, prologue), 48, 256, 1)]
            assert sm.ScaledConfig(**entry) in tune.scaled_candidates(fmt, 1) + [sm.scaled_heuristic(fmt, 1, 48, 256)]


def test_tune_scaled_block_scaled_formats_take_the_codes_path(clear_tuning_caches):
    """MX and NVFP4 (activations quantized by torch ops only): one entry per format and M, the codes path's,
    even when both paths are asked for; the tile a candidate (BLOCK_K 32 for MX, 128 or 256 for NVFP4)."""
    import argparse

    import tqk.tune as tune
    from tqk.kernels import scaled_mm as sm

    args = argparse.Namespace(shapes=["48x256"], m=[1], formats=["mxfp4dq", "nvfp4dq"], act_quant="both", jobs=1)
    table = {"configs": {}}
    args.write = lambda t: None

    def bench(calls, x, settle_s=0.1):
        for call in calls:
            assert call(x).shape == (x.shape[0], 48)
        return 1.0

    rows = tune.tune_scaled(args, torch.device("cpu"), table, bench, lambda w, x: 1.0)
    assert [(r[0], r[1]) for r in rows] == [("mxfp4dq", "codes"), ("nvfp4dq", "codes")]
    for fname in args.formats:
        fmt = tune.SCALED_FORMATS[fname].layout().scaled_format()
        entry = sm.ScaledConfig(**table["configs"][table_key(sm.scaled_table_key(fmt, False), 48, 256, 1)])
        assert entry in tune.scaled_candidates(fmt, 1) + [sm.scaled_heuristic(fmt, 1, 48, 256)]
        assert entry.block_k == 32 if fmt.k_steps else entry.block_k in (128, 256)
