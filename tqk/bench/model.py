"""Whole-model benchmark: what a user sees after `quantize_(model, config)` and `torch.compile`.

The model is tqk.bench.decoder's Llama-3-8B-shaped decoder (default: 4 of its 32 layers and the
128256-token lm_head; seeded random weights; static KV cache), decoding greedily one token per
step. One row per config and batch size (default 1 and 16). Columns, times in ms per step:

  ro ms, tok/s  wall time under torch.compile(model, fullgraph=True, mode="reduce-overhead")
                (CUDA graphs), and batch / that
  ro cpu        host CPU time per step: the thread's CPU time of single steps, each launched
                onto an idle GPU (timing.time_steps says why this is the host's own cost)
  cpu q, cpu s  the same read over back-to-back steps (q: queued) and over steps issued while the
                GPU sleeps (s: stalled), timing.host_readings (CUDA only)
  def ms, cpu   the same under torch.compile(model, fullgraph=True): no CUDA graphs
  sl ms, cpu    the same with torch.compile(..., options={"static_launch_user_defined_triton_kernels": True})
                (only with --modes ...,static): inductor launches user kernels itself, not through
                Triton's Python launcher
  at ms, cpu    the same under mode="max-autotune-no-cudagraphs" (only with --modes ...,autotune)
  pre ms        one prefill of --prefill tokens (default 2048) at the first batch size, default
                compile (only with --modes ...,prefill): the large-M GEMMs, where activation-quantized
                configs run on the 8-bit tensor cores
  floor         the GPU time of one step: the default-compiled step captured as one
                torch.cuda.CUDAGraph, replayed back to back (timing.graph_floor); wall - floor is
                what the host costs. Needs CUDA and the default mode
  ideal         the bytes a step must read (weights as stored, less the embedding table, plus the
                static KV cache, which the masked decode attention reads whole) over the memory
                ceiling measured in this run (timing.measure_memory_bandwidth)
  .. x bf16     bf16's time over this config's, same batch size, per mode and for the floor
                (> 1: faster than bf16)
  .. x pair     --paired (default: ro,default): bf16 run in the tqk config's own process, its
  .. cpu/pair   compiled decode loops interleaved with the config's (timing.interleaved): the median
                per round of bf16's wall over the config's (> 1: faster), and of the config's CPU per
                step over bf16's (< 1: cheaper). The host's speed drifts up to 1.4x over a minute on
                the H200's shared host; loops side by side see the same host, runs apart do not
  MiB           the weight bytes of `ideal`
  agree, SQNR   teacher-forced top-1 agreement and logit SQNR (dB) against bf16 over acc_len
                prompt tokens at the first batch size, through this config's compiled model
  note          why a cell is empty (package missing, time budget, error, CPU) and what went wrong
                (CUDA graphs skipped, a recompile inside the timed loop)

Protocol per batch size and mode: torch._dynamo.reset(), a fresh torch.compile, then the compiled
model's own first calls teacher-force the acc_len prompt tokens (compile, CUDA-graph recording
and the accuracy check in one). The model is never called eagerly: a user doesn't, and an eager
first call once hid a crash. reduce-overhead runs first, so its first call at batch 1 is the
model's first. Then `repeats` loops of `gen` greedy steps are timed. Tokens and positions stay
on the device (pos += 1), so the loop never syncs: a position made from a Python int would be
a copy from pageable memory, and that synchronizes every step.

Warm compiles: on CUDA, every config is first compiled at each batch size and mode, untimed, in
parallel processes (--warm-jobs, warm_config); the timed runs, one at a time, then compile from
inductor's on-disk caches. Compiling is most of the run's time, and no timed loop runs beside a
compile.

Bounded: configs run bf16 first (the reference), tqk's next, the peers last, each in a fresh
process (tqk.bench.isolate), killed at its timeout (config_timeout: the time left of
--time-budget less a reserve for each config after it), keeping the rows it finished. Inside, a
run is skipped when less time is left than the last run took. A peer whose package does not
import, or that needs a GPU, gets a row saying so. The CSV and table are rewritten after every
config; the table is printed last.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import fcntl
import json
import math
import os
import platform
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import triton
from torch._dynamo.utils import counters

from . import isolate, timing
from .decoder import ModelArgs, build_model, kv_cache_bytes, weight_bytes
from .methods import REGISTRY, Options, _gemlite_check, _torchao_check, _torchao_config, tqk_configs
from .report import sqnr_db

MODES = {"ro": "reduce-overhead", "default": "default", "autotune": "max-autotune-no-cudagraphs", "eager": "eager",
         "prefill": "prefill", "static": "default, static launcher"}
# "static": default mode with inductor's own launcher for user kernels, asked for per compile (a user's
# choice: tqk changes no inductor setting itself); Triton's Python launcher is what default mode pays per launch.
STATIC_LAUNCH = {"static_launch_user_defined_triton_kernels": True}
TORCHAO = {"torchao-int4": "int4wo", "torchao-int8": "int8wo", "torchao-fp8": "fp8dq"}
DEFAULT_CONFIGS = ("bf16", "tqk-int4", "tqk-int8", "tqk-fp8", "gemlite-int4", *TORCHAO)


# ----------------------------------------------------------------------------- configs
def unavailable(name: str, device) -> str:
    """Why config `name` cannot run here ("" when it can)."""
    if name == "bf16":
        return ""
    if name.startswith("tqk-"):
        return "" if name in tqk_configs() else "not a tqk config (or tqk's API is missing)"
    if name == "gemlite-int4":
        return _gemlite_check(device) or ""
    if name in TORCHAO:
        return _torchao_check(TORCHAO[name])(device) or ""
    return f"unknown config; known: {', '.join(['bf16', *tqk_configs(), 'gemlite-int4', *TORCHAO])}"


class _GemliteLinear(nn.Module):
    """gemlite's layer where an nn.Linear was (its buffers count as the layer's weights)."""

    def __init__(self, layer, in_features: int, out_features: int):
        super().__init__()
        self.layer = layer
        self.in_features, self.out_features = in_features, out_features

    def forward(self, x):
        return self.layer(x.reshape(-1, self.in_features)).reshape(*x.shape[:-1], self.out_features)


def apply_config(model: nn.Module, name: str, tuned: str = "") -> str:
    """Quantize model in place the way a user of that library would; returns a note. tuned: a file
    of gemlite's autotune results to start from."""
    if name == "bf16":
        return ""
    if name.startswith("tqk-"):
        import tqk
        report = tqk.quantize_(model, tqk_configs()[name])
        left = getattr(report, "skipped", {})
        return f"{len(left)} layers left in float" if left else ""
    if name in TORCHAO:
        from torchao.quantization import quantize_
        quantize_(model, _torchao_config(TORCHAO[name], Options()))
        return ""
    if name == "gemlite-int4":
        if tuned and os.path.exists(tuned):  # the warm child's autotune results: no second 60-s autotune
            from gemlite.core import GemLiteLinear
            GemLiteLinear.load_config(tuned)
        factory = REGISTRY["gemlite-A16W4"].factory
        for fqn, mod in list(model.named_modules()):
            if isinstance(mod, nn.Linear):
                parent, _, child = fqn.rpartition(".")
                layer = factory(mod.weight.data, mod.bias, Options(compile=False)).fn
                setattr(model.get_submodule(parent), child, _GemliteLinear(layer, mod.in_features, mod.out_features))
        return "A16W4 g128"
    raise ValueError(f"unknown config {name!r}")


# ----------------------------------------------------------------------------- one config
@dataclass
class Row:
    config: str
    batch: int
    wall_ms: dict = field(default_factory=dict)  # mode -> ms per step
    cpu_ms: dict = field(default_factory=dict)  # mode -> host CPU ms per step
    host_ms: dict = field(default_factory=dict)  # reduce-overhead: CPU ms per step read "queued" and "stalled"
    pair: dict = field(default_factory=dict)  # --paired: mode -> bf16 interleaved with this config (_run_paired)
    floor_ms: float = math.nan
    ideal_ms: float = math.nan
    weight_mib: float = math.nan
    agreement: float = math.nan
    sqnr_db: float = math.nan
    notes: list = field(default_factory=list)


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0][:150] if str(e) else ''}"


def _run_prefill(model, row: Row, p: dict):
    """Time one prefill of p["prefill"] tokens per sequence (default compile, its first call compiles)."""
    dev = torch.device(p["device"])
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True)
    g = torch.Generator(device="cpu").manual_seed(p["seed"] + 2)
    tokens = torch.randint(0, model.a.vocab, (row.batch, p["prefill"]), generator=g).to(dev)
    pos = torch.arange(p["prefill"], device=dev)
    with torch.no_grad():
        compiled(tokens, pos)
        wall, cpu = timing.time_steps(lambda: compiled(tokens, pos), 3, dev, p["repeats"])
    row.wall_ms["prefill"], row.cpu_ms["prefill"] = wall * 1e3, cpu * 1e3


def _compiled_and_prompt(model, mode: str, batch: int, p: dict, beside: bool = False):
    """A fresh torch.compile of model for `mode`, the teacher-forced prompt [acc_len, batch, 1] and
    the position tensor: what every run (and warm_config) starts from, so all compile the same graph.
    beside: compiled next to a model compiled already and still live (--paired: bf16 beside the
    config), so no torch._dynamo.reset() and a frame of its own (_OwnFrame)."""
    dev = torch.device(p["device"])
    if not beside:
        torch._dynamo.reset()
    if mode == "eager":
        compiled = model
    else:  # an unknown mode is a KeyError here: the run's note
        kwargs = {"default": {}, "static": {"options": STATIC_LAUNCH}}.get(mode) or {"mode": MODES[mode]}
        compiled = torch.compile(_OwnFrame(model) if beside else model, fullgraph=True, **kwargs)
    g = torch.Generator(device="cpu").manual_seed(p["seed"] + 1)
    # prompt[i]: the batch's i-th tokens [B, 1], with the strides of argmax's output (another stride
    # is a guard failure: a recompile in the timed loop)
    prompt = torch.randint(0, model.a.vocab, (p["acc_len"], batch, 1), generator=g).to(dev)
    return compiled, prompt, torch.zeros(1, dtype=torch.long, device=dev)


def is_peer(config: str) -> bool:
    """gemlite's or torchao's, not bf16 (the reference) or tqk's."""
    return not (config == "bf16" or config.startswith("tqk-"))


def config_modes(config: str, modes) -> list[str]:
    """The modes a config runs: "static" changes only how inductor launches user-defined Triton kernels
    (tqk's), so the peers skip it; bf16 runs it as the same-mode reference."""
    return [m for m in modes if m != "static" or not is_peer(config)]


def _cache_len(p: dict, first_batch: bool) -> int:
    """The static KV cache's length: the prompt, every timed step and, at the first batch size, a prefill."""
    return max(p["acc_len"] + p["repeats"] * p["gen"] + 1,
               p["prefill"] if "prefill" in p["modes"] and first_batch else 0)


class _OwnFrame(nn.Module):
    """model behind a module of its own class: dynamo caches compiled code per code object, and a second
    Decoder compiled beside the first would share Decoder.forward's cache, each call checking the other's
    guards first. Another forward, another cache; still a module, so its call costs what the config's
    does (a plain function here skipped the module calls the config's replay pays: s14 run 2's profile)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, tokens, pos):
        return self.model(tokens, pos)


def _decoder(model, mode: str, row: Row, p: dict, accuracy: bool, beside: bool = False):
    """Compile for `mode` and teacher-force the prompt through the compiled model (its first calls).
    Returns (step, rewind, logits): one greedy decode step, what takes it back p["gen"] positions, and
    the teacher-forced logits [B, acc_len, V] (float, on the CPU) when `accuracy`, else None."""
    compiled, prompt, pos = _compiled_and_prompt(model, mode, row.batch, p, beside)
    logits = []
    skips = counters["inductor"]["cudagraph_skips"]
    with torch.no_grad():  # not inference_mode: the gpt-fast form that compile + CUDA graphs expect
        for tokens in prompt:
            out = compiled(tokens, pos)[:, -1]
            if accuracy:
                logits.append(out.float().cpu())
            pos += 1
    if mode == "ro" and counters["inductor"]["cudagraph_skips"] > skips:
        row.notes.append("ro: CUDA graphs skipped")
    tok = out.argmax(-1, keepdim=True)

    @torch.no_grad()
    def step():
        nonlocal tok
        tok = compiled(tok, pos)[:, -1].argmax(-1, keepdim=True)  # a new tensor: the graph's output is reused
        pos.add_(1)

    step.floor = torch.no_grad()(lambda: compiled(tok, pos)[:, -1].argmax(-1))  # the position stays: same step
    return step, lambda: pos.sub_(p["gen"]), torch.stack(logits, 1) if accuracy else None


def _run_mode(model, mode: str, row: Row, p: dict, accuracy: bool):
    """_decoder, then time the decode loop, and for "default" on a GPU the CUDA-graph floor. Returns
    (logits, step, rewind); for "prefill", (None, None, None)."""
    if mode == "prefill":
        _run_prefill(model, row, p)
        return None, None, None
    dev = torch.device(p["device"])
    step, rewind, logits = _decoder(model, mode, row, p, accuracy)
    graphs = counters["stats"]["unique_graphs"]
    wall, cpu = timing.time_steps(step, p["gen"], dev, p["repeats"], rewind=rewind)
    row.wall_ms[mode], row.cpu_ms[mode] = wall * 1e3, cpu * 1e3
    if mode == "ro":
        row.host_ms = {k: v * 1e3 for k, v in timing.host_readings(step, p["gen"], dev, rewind=rewind).items()}
    if counters["stats"]["unique_graphs"] != graphs:
        row.notes.append(f"{mode}: recompiled in the timed loop")
    if mode == "default" and dev.type == "cuda":
        try:
            row.floor_ms = timing.graph_floor(step.floor) * 1e3
        except Exception as e:  # noqa: BLE001 - a step that cannot be captured is a note
            row.notes.append(f"floor: {_error(e)}")
    return logits, step, rewind


PAIR_ROUNDS = 6


def _run_paired(p: dict, row: Row, mode: str, cache_len: int, refs: dict, mine):
    """bf16 beside the config in `mode`, interleaved (timing.interleaved): the config's compiled step
    `mine` (step, rewind) stays live, bf16's is compiled next to it, and their loops alternate. Fills
    row.pair[mode]: both medians, and the per-round ratios, bf16 wall over the config's ("x") and the
    config's CPU per step over bf16's ("cpu"). The bf16 model is compiled from the caches its own
    run filled."""
    if "bf16" not in refs:  # built once per process, for every batch size and mode
        refs["bf16"] = build_model(ModelArgs(**p["model"]), torch.device(p["device"]), seed=p["seed"])
    ref = refs["bf16"]
    ref.setup_caches(row.batch, cache_len)
    try:
        theirs = _decoder(ref, mode, Row("bf16", row.batch), dict(p, acc_len=2), accuracy=False, beside=True)[:2]
        for _ in range(p["gen"]):  # untimed; and now it stands n steps on, as the config's step does
            theirs[0]()
        graphs = counters["stats"]["unique_graphs"]
        got = timing.interleaved({"config": mine, "bf16": theirs}, p["gen"], torch.device(p["device"]),
                                 p.get("pair_rounds", PAIR_ROUNDS))
        c, b = got["config"], got["bf16"]
        row.pair[mode] = {"ms": c["wall"] * 1e3, "bf16_ms": b["wall"] * 1e3,
                          "x": timing.median_ratio(b["walls"], c["walls"]),
                          "cpu": timing.median_ratio(c["cpus"], b["cpus"])}
        if counters["stats"]["unique_graphs"] != graphs:
            row.notes.append(f"{mode} pair: recompiled in the timed loop")
    except Exception as e:  # noqa: BLE001
        row.notes.append(f"{mode} bf16 pair: {_error(e)}")


def _accuracy(row: Row, logits, p: dict):
    if row.config == "bf16":
        torch.save(logits, p["ref_path"])
        row.agreement, row.sqnr_db = 1.0, math.inf
    elif os.path.exists(p["ref_path"]):
        ref = torch.load(p["ref_path"])
        row.agreement = (ref.argmax(-1) == logits.argmax(-1)).float().mean().item()
        row.sqnr_db = sqnr_db(ref, logits)
    else:
        row.notes.append("accuracy: no bf16 reference in this run")


def measure_config(p: dict, report=lambda rows: None) -> list[dict]:
    """Every batch size and mode of config p["config"] (a JSON dict: it comes from run() through
    isolate.run_child); report(rows) after each step, so a kill keeps what was done. Failures are
    notes in the rows, never raised."""
    dev = torch.device(p["device"])
    rows = [Row(p["config"], b, notes=[] if dev.type == "cuda" else ["floor: CUDA only"]) for b in p["batches"]]

    def emit():
        out = [asdict(r) for r in rows]
        report(out)
        return out

    try:
        model = build_model(ModelArgs(**p["model"]), dev, seed=p["seed"])
        note = apply_config(model, p["config"], _gemlite_file(p))
        wbytes = weight_bytes(model)
    except Exception as e:  # noqa: BLE001
        for r in rows:
            r.notes.append(f"error: {_error(e)}")
        return emit()
    refs = {}  # the bf16 model of --paired
    took, last = {}, 0.0  # seconds the last run of each mode, and of any mode, took: what the next one expects
    need_accuracy = True  # from the first run that gets through the prompt, at the first batch size
    for r in rows:
        r.weight_mib = wbytes / 2**20
        r.notes += [note] if note else []
        model.setup_caches(r.batch, _cache_len(p, r is rows[0]))
        if p["bandwidth"]:
            r.ideal_ms = (wbytes + kv_cache_bytes(model)) / p["bandwidth"] * 1e3
        for mode in config_modes(p["config"], p["modes"]):
            if mode == "prefill" and r is not rows[0]:
                continue
            left = p["deadline"] - time.time()
            if left < took.get(mode, last):
                r.notes.append(f"{mode}: skipped, {max(left, 0):.0f} s left (time budget)")
                continue
            t0, hits = time.time(), _cache_counts()
            print(f"    {p['config']} batch {r.batch} {MODES.get(mode, mode)}", flush=True)
            try:
                logits, *mine = _run_mode(model, mode, r, p, accuracy=need_accuracy and r is rows[0])
                if logits is not None:
                    _accuracy(r, logits, p)
                    need_accuracy = False
            except Exception as e:  # noqa: BLE001 - one mode failing must not end the config
                r.notes.append(f"{mode}: {_error(e)}")
            if mode in p.get("paired", ()) and p["config"].startswith("tqk-") and mode in r.wall_ms:
                _run_paired(p, r, mode, _cache_len(p, r is rows[0]), refs, mine)
            mine = None  # the compiled step goes with the next torch._dynamo.reset()
            took[mode] = last = time.time() - t0
            hits = {k: v - hits.get(k, 0) for k, v in _cache_counts().items() if v - hits.get(k, 0)}
            print(f"      {took[mode]:.0f} s: {r.wall_ms.get(mode, math.nan):.3f} ms/step, "
                  f"cpu {r.cpu_ms.get(mode, math.nan):.3f} {r.host_ms if mode == 'ro' else ''}, floor {r.floor_ms:.3f}, "
                  f"pair {r.pair.get(mode, {})}; caches {hits}", flush=True)
            emit()
    return emit()


def _cache_counts() -> dict:
    """inductor's FX-graph and AOTAutograd cache hits and misses so far (how much a warm run saved)."""
    return {k: v for k, v in counters["inductor"].items() if k.startswith(("fxgraph_cache", "aot_autograd_cache"))}


def warm_config(p: dict, report=lambda value: None) -> dict:
    """Compile config p["config"] once for each batch size (p["warm_batches"], default all) and mode of the run, untimed: the first
    compiled call fills the on-disk caches (inductor's FX graphs, AOTAutograd's, Triton's kernels)
    that the timed run's compiles of the same graphs then hit. Nothing is measured; returns what
    failed, by batch and mode."""
    dev = torch.device(p["device"])
    failed = {}
    with _one_at_a_time(p):
        model = build_model(ModelArgs(**p["model"]), dev, seed=p["seed"])
        apply_config(model, p["config"])
        torch.cuda.empty_cache() if dev.type == "cuda" else None
    for batch in p.get("warm_batches", p["batches"]):
        model.setup_caches(batch, _cache_len(p, batch == p["batches"][0]))
        for mode in config_modes(p["config"], p["modes"]):
            if mode in ("eager", "prefill"):
                continue
            try:
                compiled, prompt, pos = _compiled_and_prompt(model, mode, batch, p)
                with torch.no_grad():
                    compiled(prompt[0], pos)
            except Exception as e:  # noqa: BLE001 - the timed run reports it
                failed[f"{batch} {mode}"] = _error(e)
            report(failed)
    if p["config"] == "gemlite-int4" and _gemlite_file(p):
        from gemlite.core import GemLiteLinear
        GemLiteLinear.cache_config(_gemlite_file(p))
    return failed


@contextlib.contextmanager
def _one_at_a_time(p: dict):
    """Held while a warm child builds and quantizes its model: quantizing the 128256-row head takes
    float32 temporaries of several GiB, and eight children doing it at once ran the H200's 139 GiB out
    (the tenth session's first run). A lock file in the run's work folder; nothing without one."""
    if not p.get("work"):
        yield
        return
    with open(os.path.join(p["work"], "quantize.lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _gemlite_file(p: dict) -> str:
    return os.path.join(p["work"], "gemlite-autotune.json") if p.get("work") else ""


# ----------------------------------------------------------------------------- the run
def order_configs(configs) -> list[str]:
    """bf16 (the reference) first, then tqk's, then the rest in the order given; no duplicates."""
    def rank(n):
        return 0 if n == "bf16" else 1 if n.startswith("tqk-") else 2
    return sorted(dict.fromkeys(configs), key=rank)


RESERVE_S = 45.0  # kept for each config still to come: a process start, a compile and a timed loop


def config_timeout(left: float, after: int) -> float:
    """The seconds a config may take, with `left` seconds of the budget left and `after` configs to
    run after it: all but RESERVE_S for each of those, so the configs run first (bf16, the
    reference, and tqk's) finish whole; an equal share when even that does not fit."""
    return max(left - RESERVE_S * after, left / (after + 1))


WARM_SHARE = 0.45  # of the time budget, at most, for the warm compiles


def warm(params: dict, configs, work: str, jobs: int, timeout: float, log=print):
    """warm_config for every config and batch size, `jobs` processes at a time, all within `timeout` seconds. The
    timed runs then compile from the caches one after another, and no compile runs beside a timed
    loop: the two phases never overlap."""
    t0 = time.time()

    def one(job):
        name, batch = job
        left = timeout - (time.time() - t0)
        if left < 1:
            return job, None, "time budget"
        t = time.time()
        got, status = isolate.run_child("tqk.bench.model:warm_config", dict(params, config=name, warm_batches=[batch],
                                                                            work=work),
                                        os.path.join(work, f"warm-{name}-{batch}"), left, env=threads)
        log(f"  warmed {name} batch {batch} in {time.time() - t:.0f} s, at {time.time() - t0:.0f} s")
        return job, got, status

    # the peers first: their compiles are the slowest (torchao's ran past 160 s), and a job that starts in
    # the second wave gets only what the first left of the timeout
    jobs_list = [(n, b) for n in sorted(configs, key=lambda n: not is_peer(n)) for b in params["batches"]]
    # inductor's compile workers: a pool per child, cores / jobs each, not one of every core per child
    # (compile_threads is not part of the FX-graph cache key, so the timed runs still hit)
    threads = {"TORCHINDUCTOR_COMPILE_THREADS": str(max(1, (os.cpu_count() or 1) // min(jobs, len(jobs_list))))}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for (name, batch), failed, status in pool.map(one, jobs_list):
            if status or failed:
                log(f"  warm {name} batch {batch}: {status or failed}")
    log(f"[{time.time() - t0:4.0f} s] warm compiles of {len(configs)} configs x {len(params['batches'])} batch "
        f"sizes, {jobs} at a time")


def run(params: dict, configs, *, time_budget_s: float, isolated: bool = True, on_rows=None, log=print,
        warm_jobs: int = 0) -> list[Row]:
    """Measure every config (order_configs order); on_rows(all rows so far) after each. params: the
    JSON-able part of measure_config's dict (model, device, batches, modes, acc_len, gen, repeats,
    seed, bandwidth). warm_jobs > 0 (isolated runs only): first compile every config in that many
    parallel processes (warm), so the timed runs' compiles hit the caches."""
    t_start = time.time()
    configs = order_configs(configs)
    why_not = {n: unavailable(n, params["device"]) for n in configs}
    work = tempfile.mkdtemp(prefix="tqk-bench-model-")
    rows: list[Row] = []
    try:
        if warm_jobs > 0 and isolated:
            warm(params, [n for n in configs if not why_not[n]], work, warm_jobs,
                 timeout=WARM_SHARE * time_budget_s, log=log)
        for name in configs:
            after = sum(1 for n in configs[configs.index(name) + 1:] if not why_not[n])
            share = config_timeout(time_budget_s - (time.time() - t_start), after)
            if why_not[name] or share < 1:
                note = f"skipped: {why_not[name] or 'time budget'}"
                log(f"{name}: {note}")
                rows += [Row(name, b, notes=[note]) for b in params["batches"]]
                continue
            log(f"[{time.time() - t_start:4.0f} s] {name}: {share:.0f} s")
            p = dict(params, config=name, deadline=time.time() + share, ref_path=os.path.join(work, "bf16_logits.pt"),
                     work=work)
            if isolated:
                got, status = isolate.run_child("tqk.bench.model:measure_config", p, os.path.join(work, name), share)
            else:
                got, status = measure_config(p), ""
            got = [Row(**d) for d in got or []] or [Row(name, b) for b in params["batches"]]
            for r in got:
                r.notes += [status] if status else []
            rows += got
            if on_rows is not None:
                on_rows(rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


# ----------------------------------------------------------------------------- table and CSV
def _vs_bf16(rows: list[Row], ms) -> list[float]:
    """Per row, bf16's ms(row) over this row's at the same batch size (NaN where either is missing)."""
    base = {r.batch: ms(r) for r in rows if r.config == "bf16"}
    return [base.get(r.batch, math.nan) / ms(r) if ms(r) > 0 else math.nan for r in rows]


SHORT = {"ro": "ro", "default": "def", "autotune": "at", "eager": "eager", "prefill": "pre", "static": "sl"}


def _columns(rows: list[Row], modes) -> list[tuple[str, str, str, list]]:
    """(table header, CSV name, format, values) per column."""
    nan = math.nan
    cols = [("config", "config", "", [r.config for r in rows]), ("batch", "batch", "", [r.batch for r in rows])]
    for m in modes:
        cols.append((f"{SHORT[m]} ms", f"{m}_ms", ".3f", [r.wall_ms.get(m, nan) for r in rows]))
        if m == "ro":
            cols.append(("tok/s", "ro_tok_s", ".0f", [r.batch / r.wall_ms["ro"] * 1e3 if "ro" in r.wall_ms else nan
                                                      for r in rows]))
        cols.append((f"{SHORT[m]} cpu", f"{m}_cpu_ms", ".3f", [r.cpu_ms.get(m, nan) for r in rows]))
        if m == "ro" and any(r.host_ms for r in rows):
            cols += [(f"cpu {k[0]}", f"ro_cpu_{k}_ms", ".3f", [r.host_ms.get(k, nan) for r in rows])
                     for k in ("queued", "stalled")]
    cols += [("floor", "floor_ms", ".3f", [r.floor_ms for r in rows]),
             ("ideal", "ideal_ms", ".3f", [r.ideal_ms for r in rows])]
    for m in modes:
        cols.append((f"{SHORT[m]} x bf16", f"{m}_x_bf16", ".2f", _vs_bf16(rows, lambda r: r.wall_ms.get(m, nan))))
    cols.append(("floor x bf16", "floor_x_bf16", ".2f", _vs_bf16(rows, lambda r: r.floor_ms)))
    for m in modes:
        if any(m in r.pair for r in rows):
            cols.append((f"{SHORT[m]} x pair", f"{m}_x_paired_bf16", ".2f",
                         [r.pair[m]["x"] if m in r.pair else nan for r in rows]))
            cols.append((f"{SHORT[m]} cpu/pair", f"{m}_cpu_over_paired_bf16", ".2f",
                         [r.pair[m]["cpu"] if m in r.pair else nan for r in rows]))
    return cols + [("MiB", "weight_mib", ".1f", [r.weight_mib for r in rows]),
                   ("agree", "agreement", ".3f", [r.agreement for r in rows]),
                   ("SQNR", "sqnr_db", ".1f", [r.sqnr_db for r in rows]),
                   ("note", "note", "", ["; ".join(r.notes) for r in rows])]


def _cell(v, fmt: str) -> str:
    if isinstance(v, float) and not math.isfinite(v):
        return "-" if math.isnan(v) else "inf"
    return format(v, fmt)


def format_table(rows: list[Row], modes, header: str = "") -> str:
    cols = _columns(rows, modes)
    cells = [[h] + [_cell(v, fmt) for v in vals] for h, _, fmt, vals in cols]
    widths = [max(len(c) for c in cs) for cs in cells]
    lines = [" ".join(cs[i].ljust(w) if h in ("config", "note") else cs[i].rjust(w)
                      for cs, w, (h, _, _, _) in zip(cells, widths, cols)).rstrip() for i in range(len(rows) + 1)]
    return "\n".join(([header] if header else []) + lines[:1] + ["-" * len(lines[0])] + lines[1:])


def write_csv(rows: list[Row], modes, path: str) -> str:
    cols = _columns(rows, modes)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([name for _, name, _, _ in cols])
        for i in range(len(rows)):
            w.writerow(["" if isinstance(v[i], float) and math.isnan(v[i]) else v[i] for _, _, _, v in cols])
    return path


# ----------------------------------------------------------------------------- CLI
def add_args(p: argparse.ArgumentParser):
    p.add_argument("--configs", default=",".join(DEFAULT_CONFIGS), help="comma list (default: %(default)s)")
    p.add_argument("--device", default=None, help="cuda (default when present) or cpu")
    p.add_argument("--tiny", action="store_true", help="dim 128, 2 layers, vocab 512: a CPU smoke run")
    p.add_argument("--n-layers", type=int, default=None, help="decoder layers (default 4 of the 8B's 32; tiny: 2)")
    p.add_argument("--batch-sizes", default="1,16")
    p.add_argument("--modes", default="ro,default",
                   help="comma list of ro (reduce-overhead), default, static (default with inductor's static "
                        "launcher for user kernels, torch.compile(options=...)), autotune "
                        "(max-autotune-no-cudagraphs), eager (no compile), prefill (one --prefill-token prefill); "
                        "default %(default)s")
    p.add_argument("--prefill", type=int, default=None, help="prefill tokens (default 2048; tiny: 16)")
    p.add_argument("--acc-len", type=int, default=None,
                   help="teacher-forced prompt tokens: warm-up and accuracy (default 32; tiny: 4)")
    p.add_argument("--gen", type=int, default=None, help="timed decode steps per loop (default 64; tiny: 4)")
    p.add_argument("--repeats", type=int, default=None, help="timed loops per run, median (default 3; tiny: 1)")
    p.add_argument("--time-budget", type=float, default=540.0, help="seconds for all configs (default %(default)s)")
    p.add_argument("--no-isolate", dest="isolate", action="store_false", help="every config in this process (no kill)")
    p.add_argument("--paired", default="ro,default",
                   help="comma list of modes in which each tqk config's process also runs bf16, their decode "
                        "loops interleaved (default %(default)s; '' for none)")
    p.add_argument("--warm-jobs", type=int, default=None,
                   help="parallel processes that compile every config first, untimed, so the timed runs hit "
                        "the compile caches (default 8 on CUDA, 0 on a CPU; 0: off; 16 ran the H200's 139 GiB out of memory)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench_out/model")


def main(args) -> int:
    t0 = time.time()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    a = ModelArgs.tiny() if args.tiny else ModelArgs.llama3_8b(n_layers=4)
    if args.n_layers is not None:
        a.n_layers = args.n_layers
    modes = args.modes.split(",")
    acc_len, gen, repeats = (v if v is not None else d for v, d in zip(
        (args.acc_len, args.gen, args.repeats), (4, 4, 1) if args.tiny else (32, 64, 3)))
    if set(modes) - set(MODES) or min(acc_len, gen, repeats) < 1:
        raise SystemExit(f"--modes takes {list(MODES)}; --acc-len, --gen and --repeats at least 1")
    # the ceiling of `ideal`; on a CPU a small buffer, only so the column has a value
    bw, bw_kernel, _ = timing.measure_memory_bandwidth(
        device, **({} if device.type == "cuda" else dict(sizes=(16 << 20,), reps=3)))
    if device.type == "cuda":
        torch.cuda.empty_cache()
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    header = (f"{gpu}, torch {torch.__version__}; decoder {a.n_layers} layers dim {a.dim} vocab {a.vocab}; "
              f"memory ceiling {bw / 1e12:.3g} TB/s ({bw_kernel}); times in ms per decode step")
    print(header)
    params = dict(model=asdict(a), device=str(device), batches=[int(b) for b in args.batch_sizes.split(",")],
                  modes=modes, acc_len=acc_len, gen=gen, repeats=repeats, seed=args.seed, bandwidth=bw,
                  prefill=args.prefill or (16 if args.tiny else 2048),
                  paired=[m for m in args.paired.split(",") if m in modes])
    os.makedirs(args.out, exist_ok=True)

    def save(rows, finished: bool) -> str:
        table = format_table(rows, modes, header)
        write_csv(rows, modes, os.path.join(args.out, "model_results.csv"))
        with open(os.path.join(args.out, "model_table.txt"), "w") as fh:
            fh.write(table + "\n")
        with open(os.path.join(args.out, "model_meta.json"), "w") as fh:
            json.dump(dict(params, gpu=gpu, torch=torch.__version__, triton=triton.__version__,
                           memory_kernel=bw_kernel, finished=finished,
                           elapsed_s=round(time.time() - t0, 1), time_budget_s=args.time_budget,
                           configs=order_configs(args.configs.split(",")), isolated=args.isolate,
                           warm_jobs=args.warm_jobs), fh, indent=1)
        return table

    warm_jobs = args.warm_jobs if args.warm_jobs is not None else (8 if device.type == "cuda" else 0)
    rows = run(params, args.configs.split(","), time_budget_s=args.time_budget, isolated=args.isolate,
               on_rows=lambda rs: save(rs, finished=False), warm_jobs=warm_jobs)
    table = save(rows, finished=True)
    print(f"\ntook {time.time() - t0:.0f} s; wrote {args.out}/model_results.csv, model_table.txt, model_meta.json\n")
    print(table)
    return 0
