"""Build script: the Python package plus the optional native extensions.

* ``lsn_fast._C`` (csrc/cpu): C++17 + OpenMP kernels bound with pybind11. Always built; it takes
  raw pointers from the Python API layer, so it needs no torch headers at build time.
* ``lsn_fast._cuda`` (csrc/cuda): CUDA C++ kernels, built only where ``nvcc`` exists and
  ``LSN_FAST_BUILD_CUDA=1`` is set (a GPU machine). CI compiles the .cu sources separately
  (compile-only, ``-arch=sm_90``) so a broken kernel never lands.
"""

import glob
import os
import shutil
import subprocess
import sys

from setuptools import find_packages, setup

try:
    from pybind11.setup_helpers import Pybind11Extension, build_ext
except ImportError:  # pragma: no cover - pybind11 is a build requirement
    sys.exit("lsn_fast needs pybind11 to build: pip install pybind11")

HERE = os.path.dirname(os.path.abspath(__file__))


def _openmp_flags():
    if sys.platform == "darwin":
        return [], []
    return ["-fopenmp"], ["-fopenmp"]


omp_compile, omp_link = _openmp_flags()
cpu_sources = sorted(glob.glob(os.path.join("csrc", "cpu", "*.cpp")))

ext_modules = [
    Pybind11Extension(
        "lsn_fast._C",
        cpu_sources,
        include_dirs=[os.path.join("csrc", "cpu")],
        depends=sorted(glob.glob(os.path.join("csrc", "cpu", "*.h"))),  # rebuild when the kernel body changes
        cxx_std=17,
        # -ffp-contract=off: no FMA contraction, so every ISA path computes the same bits.
        # -fno-math-errno / -fno-trapping-math: sqrt and floor become single (vector) instructions
        # and float selects if-convert; neither changes a result (no -ffast-math).
        extra_compile_args=["-O3", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math", *omp_compile],
        extra_link_args=omp_link,
    )
]


class BuildExt(build_ext):
    """pybind11's build_ext, plus the optional CUDA extension compiled with nvcc."""

    def build_extensions(self):
        super().build_extensions()
        if os.environ.get("LSN_FAST_BUILD_CUDA", "0") == "1":
            self._build_cuda()

    def _build_cuda(self):
        nvcc = shutil.which("nvcc")
        if nvcc is None:
            raise RuntimeError("LSN_FAST_BUILD_CUDA=1 but nvcc was not found on PATH")
        import pybind11
        import sysconfig

        sources = sorted(glob.glob(os.path.join(HERE, "csrc", "cuda", "*.cu")))
        if not sources:
            return
        arch = os.environ.get("LSN_FAST_CUDA_ARCH", "sm_90")
        ext_suffix = sysconfig.get_config_var("EXT_SUFFIX")
        out_dir = os.path.join(self.build_lib if not self.inplace else HERE, "lsn_fast")
        os.makedirs(out_dir, exist_ok=True)
        target = os.path.join(out_dir, "_cuda" + ext_suffix)
        cmd = [
            nvcc, "-O3", "-std=c++17", f"-arch={arch}", "--shared", "-Xcompiler", "-fPIC",
            "-I", pybind11.get_include(), "-I", sysconfig.get_paths()["include"],
            "-I", os.path.join(HERE, "csrc", "cuda"),
            *sources, "-o", target,
        ]
        print(" ".join(cmd))
        subprocess.check_call(cmd)


setup(
    packages=find_packages(include=["lsn_fast", "lsn_fast.*"]),
    package_data={"lsn_fast.weights": ["*.safetensors", "*.json", "*.md"]},
    ext_modules=ext_modules,
    cmdclass={"build_ext": BuildExt},
    zip_safe=False,
)
