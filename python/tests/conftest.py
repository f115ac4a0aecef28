"""Shared fixtures for the flatring Python tests (run by ctest: see CMakeLists.txt here).

PYTHONPATH holds the build tree's python/ (the flatring package) and the flatc --python classes of
examples/schema/order.fbs; FLATRING_SOURCE_DIR names the source tree."""

import os
import subprocess
import sys
import uuid

import pytest

sys.path.insert(0, os.path.dirname(__file__))

SOURCE_DIR = os.environ.get(
    "FLATRING_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
)
ORDER_FBS = os.path.join(SOURCE_DIR, "examples", "schema", "order.fbs")
OTHER_FBS = os.path.join(SOURCE_DIR, "tests", "schema", "test_other.fbs")


@pytest.fixture
def name(request):
    """A ring name no other test or process uses; the ring is removed after the test."""
    import flatring

    n = "pyt-%d-%s" % (os.getpid(), uuid.uuid4().hex[:12])
    yield n
    flatring.remove(n)


@pytest.fixture
def names():
    """A factory of unique ring names, all removed after the test."""
    import flatring

    made = []

    def make():
        n = "pyt-%d-%s" % (os.getpid(), uuid.uuid4().hex[:12])
        made.append(n)
        return n

    yield make
    for n in made:
        flatring.remove(n)


@pytest.fixture(scope="session")
def order_fbs():
    return ORDER_FBS


@pytest.fixture(scope="session")
def order_bfbs(tmp_path_factory):
    """The binary schema of app.Order (flatc --binary --schema)."""
    d = tmp_path_factory.mktemp("bfbs")
    subprocess.run(["flatc", "--binary", "--schema", "-o", str(d), ORDER_FBS], check=True)
    with open(d / "order.bfbs", "rb") as f:
        return f.read()
