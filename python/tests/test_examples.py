"""The Python examples as end-to-end tests: each exits 0 only when it saw what it describes."""

import os
import subprocess
import sys

import pytest

from conftest import SOURCE_DIR

EXAMPLES = os.path.join(SOURCE_DIR, "examples", "python")


def run(script, *args, timeout=240):
    p = subprocess.run([sys.executable, os.path.join(EXAMPLES, script), *args],
                       capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


def test_seeds_side_by_side():
    out = run("seeds.py")
    assert "UnpicklingError: pickle data was truncated" in out
    assert "65537 bytes arrived intact" in out
    assert "the command RAN" in out  # multiprocessing: the malicious pickle runs
    assert "inert bytes; nothing ran" in out  # flatring: it does not
    assert "VerifyError" in out and "seeds: all as described" in out


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_worker_pool_kill_and_redeliver(method):
    out = run("worker_pool.py", "--workers", "3", "--tasks", "3000", "--start-method", method)
    assert out.count("stalls: SIGKILL") == 2
    assert "3000 accepted and verified" in out
    assert "tasks redelivered 2" in out and "duplicate results ignored 1" in out
    assert "workers killed 2, worker failures 0" in out


def test_worker_pool_without_kills():
    out = run("worker_pool.py", "--workers", "2", "--tasks", "1000", "--no-kill")
    assert "1000 accepted and verified" in out and "workers killed 0" in out
