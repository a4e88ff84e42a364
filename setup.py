"""Builds the one compiled extension, fastbox._core, from the Cython wrapper and the C
core; the small fastbox-monitor executable shipped inside the package; and the `fastbox`
command itself, a C client installed beside the Python CLI (fastbox-py)."""
import glob
import os

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
# setuptools provides distutils (its own copy) once imported, on every Python version.
from distutils.command.build_scripts import build_scripts  # noqa: E402
from distutils.ccompiler import new_compiler  # noqa: E402
from distutils.sysconfig import customize_compiler  # noqa: E402

CFLAGS = ["-O2", "-std=gnu11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Wno-unused-parameter",
          "-Wno-missing-field-initializers", "-fno-strict-aliasing"]
# Full RELRO for everything we link: every symbol is bound at load and the GOT is then
# read-only. The container child is a CLONE_VM clone of Python running on its parent's
# TLS: it must never enter the dynamic linker to resolve a lazily bound symbol.
LDFLAGS = ["-Wl,-z,relro,-z,now"]

core = Extension(
    "fastbox._core",
    sources=["fastbox/_core.pyx"] + sorted(glob.glob("csrc/fb_*.c")),
    include_dirs=["csrc"],
    extra_compile_args=CFLAGS,
    extra_link_args=LDFLAGS,
)


# What the exec helper runs between its start and the container's program: the child's
# steps from the core, static and without libc (csrc/enter/fb_nolibc.c says why). The
# string functions there are loops the compiler must not turn back into memcpy calls.
ENTER_SOURCES = ["csrc/enter/fb_enter.c", "csrc/enter/fb_nolibc.c", "csrc/fb_init.c",
                 "csrc/fb_mount.c", "csrc/fb_pivot.c", "csrc/fb_seccomp.c", "csrc/fb_error.c",
                 "csrc/fb_fds.c"]
ENTER_CFLAGS = CFLAGS + ["-DFB_NOLIBC", "-fno-stack-protector", "-fno-tree-loop-distribute-patterns",
                         "-fno-asynchronous-unwind-tables"]
ENTER_LDFLAGS = ["-static", "-nostdlib", *LDFLAGS, "-Wl,--build-id=none", "-lgcc"]

# The OCI runtime (csrc/runtime/): runc's command line over the same core, linked
# dynamically only for dlopen("libseccomp.so.2") when a config has a seccomp section.
RUNTIME_SOURCES = sorted(glob.glob("csrc/runtime/rt_*.c")) + sorted(glob.glob("csrc/fb_*.c"))
RUNTIME_LIBS = ["-ldl", "-lpthread"]


class BuildWithMonitor(build_ext):
    """Also links csrc/monitor/fb_monitor.c into fastbox/libexec/fastbox-monitor, the
    exec helper into fastbox/libexec/fastbox-enter, --init's PID 1 into
    fastbox/libexec/fastbox-init, a user network's name server into
    fastbox/libexec/fastbox-dns, and the OCI runtime into fastbox/libexec/fastbox-runtime."""

    def run(self):
        super().run()
        base = "fastbox" if self.inplace else os.path.join(self.build_lib, "fastbox")
        out_dir = os.path.join(base, "libexec")
        os.makedirs(out_dir, exist_ok=True)
        # fb_net, fb_net_release: the monitor releases a bridge container's endpoint at its exit
        objects = self.compiler.compile(["csrc/monitor/fb_monitor.c", "csrc/fb_net.c", "csrc/fb_net_release.c",
                                         "csrc/fb_error.c"],
                                        output_dir=os.path.join(self.build_temp, "monitor"),
                                        include_dirs=["csrc"], extra_postargs=CFLAGS)
        # static: its exec is on `run -d`'s path (the starter waits for it), and a static
        # binary skips the dynamic loader's work, a few hundred microseconds here
        self.compiler.link_executable(objects, "fastbox-monitor", output_dir=out_dir,
                                      extra_postargs=["-static"] + LDFLAGS)
        objects = self.compiler.compile(ENTER_SOURCES, output_dir=os.path.join(self.build_temp, "enter"),
                                        include_dirs=["csrc"], extra_postargs=ENTER_CFLAGS)
        self.compiler.link_executable(objects, "fastbox-enter", output_dir=out_dir,
                                      extra_postargs=ENTER_LDFLAGS)
        # --init's PID 1 (csrc/init/fb_pid1.c): static, it needs nothing of the container's
        objects = self.compiler.compile(["csrc/init/fb_pid1.c"],
                                        output_dir=os.path.join(self.build_temp, "init"),
                                        extra_postargs=CFLAGS)
        self.compiler.link_executable(objects, "fastbox-init", output_dir=out_dir,
                                      extra_postargs=["-static"] + LDFLAGS)
        # a user network's name server (csrc/dns/fb_dns.c): static, libc only
        objects = self.compiler.compile(["csrc/dns/fb_dns.c"],
                                        output_dir=os.path.join(self.build_temp, "dns"),
                                        extra_postargs=CFLAGS)
        self.compiler.link_executable(objects, "fastbox-dns", output_dir=out_dir,
                                      extra_postargs=["-static"] + LDFLAGS)
        objects = self.compiler.compile(RUNTIME_SOURCES, output_dir=os.path.join(self.build_temp, "runtime"),
                                        include_dirs=["csrc"], extra_postargs=CFLAGS)
        self.compiler.link_executable(objects, "fastbox-runtime", output_dir=out_dir,
                                      extra_postargs=LDFLAGS + RUNTIME_LIBS)


class BuildWithClient(build_scripts):
    """Also links csrc/client/fb_client.c into the `fastbox` script: a binary among the
    scripts is installed as it is (pip rewrites only `#!python` lines)."""

    def run(self):
        super().run()
        compiler = new_compiler()
        customize_compiler(compiler)
        temp = self.get_finalized_command("build").build_temp
        objects = compiler.compile(["csrc/client/fb_client.c"], output_dir=temp,
                                   extra_postargs=CFLAGS)
        # Static: no dynamic loader on every command (~0.25 ms here); it uses no NSS.
        compiler.link_executable(objects, "fastbox", output_dir=self.build_dir,
                                 extra_postargs=["-static"] + LDFLAGS)
        # fastbox-runtime on PATH too (it finds the exec helper in the package's libexec)
        objects = compiler.compile(RUNTIME_SOURCES, output_dir=os.path.join(temp, "runtime"),
                                   include_dirs=["csrc"], extra_postargs=CFLAGS)
        compiler.link_executable(objects, "fastbox-runtime", output_dir=self.build_dir,
                                 extra_postargs=LDFLAGS + RUNTIME_LIBS)


setup(ext_modules=cythonize([core], language_level=3,
                            compiler_directives={"boundscheck": False, "wraparound": False}),
      cmdclass={"build_ext": BuildWithMonitor, "build_scripts": BuildWithClient})
