"""Builds the one compiled extension, fastbox._core, from the Cython wrapper and the C core."""
import glob

from Cython.Build import cythonize
from setuptools import Extension, setup

core = Extension(
    "fastbox._core",
    sources=["fastbox/_core.pyx"] + sorted(glob.glob("csrc/fb_*.c")),
    include_dirs=["csrc"],
    extra_compile_args=["-O2", "-std=gnu11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Wno-unused-parameter",
                        "-Wno-missing-field-initializers", "-fno-strict-aliasing"],
)

setup(ext_modules=cythonize([core], language_level=3,
                            compiler_directives={"boundscheck": False, "wraparound": False}))
