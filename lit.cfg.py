# lit configuration: every pass has test/lit/<pass>.mlir with RUN and CHECK lines.
import os
import shutil
import sys

import lit.formats

config.name = "bertc"
config.test_format = lit.formats.ShTest(execute_external=False)
config.suffixes = [".mlir"]
config.excludes = ["Output", ".venv", "runtime", "bertc", "passes", "dialects", "benchmarks", "search"]
bindir = os.path.dirname(sys.executable)
config.environment["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
# FileCheck is the Python `filecheck` package; bertc-opt is this repository's.
config.substitutions.append(("FileCheck", os.path.join(bindir, "filecheck")))
config.substitutions.append(("bertc-opt", os.path.join(bindir, "bertc-opt")))
if shutil.which("qemu-aarch64"):
    config.available_features.add("qemu-aarch64")
if shutil.which("glslangValidator"):  # the shaders compile to SPIR-V (Debian glslang-tools)
    config.available_features.add("vulkan")
config.substitutions.append(("%shaders", os.path.join(os.path.dirname(__file__), "runtime", "vulkan", "shaders")))
