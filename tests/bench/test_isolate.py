"""tqk.bench.isolate: a child process per call, killed with its group at the timeout, partial results kept."""
import os
import sys
import textwrap
import time

import pytest

from tqk.bench import isolate

HELPER = """
import os, subprocess, sys, time

def work(args, report):
    report({"step": 1})
    if args["how"] == "hang":
        # a grandchild in the same group, as inductor's compile workers are
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"], env=dict(os.environ))
        time.sleep(3600)
    if args["how"] == "crash":
        os._exit(3)
    return {"step": 2, "echo": args["echo"]}
"""


@pytest.fixture
def helper(tmp_path, monkeypatch):
    (tmp_path / "bench_helper.py").write_text(textwrap.dedent(HELPER))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    return tmp_path


def _group_alive(marker: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                if marker.encode() in fh.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def test_child_returns_its_value(helper):
    value, status = isolate.run_child("bench_helper:work", {"how": "ok", "echo": [1, "a"]}, str(helper / "ok"), 120)
    assert status == "" and value == {"step": 2, "echo": [1, "a"]}


def test_crash_keeps_the_last_report(helper):
    value, status = isolate.run_child("bench_helper:work", {"how": "crash", "echo": 0}, str(helper / "c"), 120)
    assert status == "exited with code 3" and value == {"step": 1}


@pytest.mark.skipif(not os.path.isdir("/proc") or sys.platform != "linux", reason="reads /proc")
def test_timeout_kills_the_group_and_keeps_the_last_report(helper, monkeypatch):
    marker = f"tqk-isolate-test-{os.getpid()}-{time.time_ns()}"
    monkeypatch.setenv("TQK_TEST_MARKER", marker)
    t0 = time.perf_counter()
    # 20 s: the child imports torch (through tqk) before it reports, which takes seconds on a busy CI machine
    value, status = isolate.run_child("bench_helper:work", {"how": "hang", "echo": 0}, str(helper / "h"), 20)
    assert time.perf_counter() - t0 < 60
    assert status == "timed out after 20 s" and value == {"step": 1}
    assert _group_alive(marker) == []  # the child and its grandchild are gone
