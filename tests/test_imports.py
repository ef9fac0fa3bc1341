"""The library holds no cluster code: importing every kabuflow module loads neither kfp nor kubernetes."""

import subprocess
import sys

# Run in a fresh interpreter: this test process has kfp loaded already (other tests compile pipelines).
PROBE = """
import importlib, pkgutil, sys
import kabuflow
names = [m.name for m in pkgutil.walk_packages(kabuflow.__path__, "kabuflow.")]
for name in names:
    importlib.import_module(name)
print(len(names), *sorted({m.split(".")[0] for m in sys.modules} & {"kfp", "kubernetes", "pipelines", "components"}))
"""


def test_no_kabuflow_module_imports_kfp_or_kubernetes():
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True
    ).stdout.split()
    assert int(out[0]) > 40  # the walk found the whole package, not an empty path
    assert out[1:] == []
