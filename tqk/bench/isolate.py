"""Run a function in a child process with a deadline, keeping what it reported before it ended.

The model benchmark measures each config in a fresh process: compile caches, CUDA-graph pools and
GPU memory leave with it, a crash (or a CUDA error that poisons the context) ends only that
config, and a compile that runs past its time is killed with its whole process group (inductor's
compile workers too). The child reports by rewriting a JSON file atomically, so the parent keeps
every result reported before a kill.

    python -m tqk.bench.isolate SPEC.json     # the child's side; SPEC names "module:function"
"""
from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
from typing import Optional

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _write_json(path: str, obj):
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as fh:
        json.dump(obj, fh)
    os.replace(tmp, path)  # a reader never sees half a file, even when the writer is killed


def _read_json(path: str):
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _kill_group(proc: subprocess.Popen):
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the child leads its own group
    except (ProcessLookupError, PermissionError):
        pass


class Child:
    """A started child: finish(timeout) waits for it, kills its group and returns what it reported."""

    def __init__(self, target: str, args: dict, path: str, env: Optional[dict] = None):
        self.spec, self.result = path + ".spec.json", path + ".result.json"
        if os.path.exists(self.result):
            os.remove(self.result)
        _write_json(self.spec, {"target": target, "args": args, "result": self.result})
        env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        env["PYTHONPATH"] = os.pathsep.join(x for x in (_ROOT, env.get("PYTHONPATH")) if x)  # this tqk, not another
        self.proc = subprocess.Popen([sys.executable, "-m", "tqk.bench.isolate", self.spec], stdin=subprocess.DEVNULL,
                                     env=env, start_new_session=True)

    def finish(self, timeout: Optional[float]) -> tuple[object, str]:
        status = ""
        try:
            rc = self.proc.wait(timeout=timeout)
            if rc != 0:
                status = f"exited with code {rc}"
        except subprocess.TimeoutExpired:
            status = f"timed out after {timeout:.0f} s"
        finally:  # also on KeyboardInterrupt; a stray grandchild goes with the group
            _kill_group(self.proc)
            self.proc.wait()
        data = _read_json(self.result) or {}
        if not status and not data.get("done"):
            status = "exited without a result"
        return data.get("value"), status


def run_child(target: str, args: dict, path: str, timeout: Optional[float], env: Optional[dict] = None
              ) -> tuple[object, str]:
    """Call target(args, report) ("module:function") in a fresh Python, killed with its process group
    after `timeout` seconds. Returns (what it last passed to report() or returned, status): status is
    "" when it returned, else "timed out after N s" or "exited with code N". The child's output goes
    to this process's stdout and stderr; `path` is the prefix of its spec and result files; `env`
    adds to the child's environment."""
    return Child(target, args, path, env).finish(timeout)


def _child(spec_path: str) -> int:
    spec = _read_json(spec_path)
    module, _, name = spec["target"].partition(":")
    fn = getattr(importlib.import_module(module), name)

    def report(value, done=False):
        _write_json(spec["result"], {"value": value, "done": done})

    report(fn(spec["args"], report), done=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # no atexit teardown (compile worker pools, CUDA): the parent kills the group next


if __name__ == "__main__":
    _child(sys.argv[1])
