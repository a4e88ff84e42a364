"""Builds the one compiled extension, fastbox._core, from the Cython wrapper and the C
core, and the small fastbox-monitor executable shipped inside the package."""
import glob
import os

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

CFLAGS = ["-O2", "-std=gnu11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Wno-unused-parameter",
          "-Wno-missing-field-initializers", "-fno-strict-aliasing"]

core = Extension(
    "fastbox._core",
    sources=["fastbox/_core.pyx"] + sorted(glob.glob("csrc/fb_*.c")),
    include_dirs=["csrc"],
    extra_compile_args=CFLAGS,
)


class BuildWithMonitor(build_ext):
    """Also links csrc/monitor/fb_monitor.c into fastbox/libexec/fastbox-monitor."""

    def run(self):
        super().run()
        base = "fastbox" if self.inplace else os.path.join(self.build_lib, "fastbox")
        out_dir = os.path.join(base, "libexec")
        os.makedirs(out_dir, exist_ok=True)
        objects = self.compiler.compile(["csrc/monitor/fb_monitor.c"], output_dir=self.build_temp,
                                        extra_postargs=CFLAGS)
        self.compiler.link_executable(objects, "fastbox-monitor", output_dir=out_dir)


setup(ext_modules=cythonize([core], language_level=3,
                            compiler_directives={"boundscheck": False, "wraparound": False}),
      cmdclass={"build_ext": BuildWithMonitor})
