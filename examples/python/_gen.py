"""Imports the flatc --python classes of the examples' schemas, generating them with flatc into a
temporary directory when they are not on sys.path (ctest puts the build tree's copies there)."""

import atexit
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.dirname(HERE)
SCHEMAS = {
    "pool": [os.path.join(EXAMPLES, "worker_pool", "schema", f)
             for f in ("task.fbs", "result.fbs", "control.fbs")],
    "app": [os.path.join(EXAMPLES, "schema", "order.fbs")],
}


def ensure(package):
    try:
        __import__(package)
        return
    except ImportError:
        pass
    out = tempfile.mkdtemp(prefix="flatring-gen-")
    atexit.register(shutil.rmtree, out, True)
    subprocess.run(["flatc", "--python", "-o", out] + SCHEMAS[package], check=True)
    sys.path.insert(0, out)
    os.environ["PYTHONPATH"] = out + os.pathsep + os.environ.get("PYTHONPATH", "")
    __import__(package)
