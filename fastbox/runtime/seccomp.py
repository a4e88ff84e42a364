"""The container's seccomp filter: a profile in Docker's format (fastbox.seccomp_profile)
compiled to classic BPF by libseccomp, which the core installs with one syscall.

Compiled once per (profile, capability set, architecture), never per container: kept in
this process's memory, and on disk under FASTBOX_RUN/seccomp (root's only, 0600, written
by rename) keyed by a hash of the profile, the capabilities, the architecture, the
kernel release and the libseccomp library, so that a fresh `fastbox-py run` reads ~4 KB
instead of paying a compile (~25 ms with ctypes and json imported). libseccomp is
reached through ctypes and loaded only for a compile: linking it into _core would load
it on every import of the core, for nothing on a cache hit.

On top of libseccomp's program goes what runc's patchbpf adds: a syscall numbered above
the highest one the profile names gets ENOSYS, so that a program calling a syscall
newer than the profile falls back as on an older kernel instead of failing with EPERM.
"""
import _thread
import os
import sys

from fastbox import config

DEFAULT_PROFILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seccomp_default.json")
FORMAT = b"fastbox-seccomp-1\0"  # changes whenever what compile() emits changes
ENOSYS = 38
X32_BIT = 0x40000000
BPF_MAXINSNS = 4096
# uname's machine -> (libseccomp's name, AUDIT_ARCH_*, how a profile's arches name it)
ARCHES = {"x86_64": ("SCMP_ARCH_X86_64", 0xC000003E, ("amd64", "x86_64")),
          "aarch64": ("SCMP_ARCH_AARCH64", 0xC00000B7, ("arm64", "aarch64"))}
_LIB = "libseccomp.so.2"

_memory = {}  # (profile text or None, caps) -> program
_MEMORY_MAX = 64
_lock = _thread.allocate_lock()
_lib = []
_default = []


def filter_for(profile, caps):
    """The compiled program (bytes) for profile and the capability mask caps, or None
    when unconfined. profile: None for fastbox's default, "unconfined", or a profile's
    JSON text."""
    if profile == "unconfined":
        return None
    key = (profile, caps)
    prog = _memory.get(key)
    if prog is None:
        with _lock:
            prog = _memory.get(key) or _load_or_compile(profile, caps)
            if len(_memory) >= _MEMORY_MAX:
                _memory.clear()
            _memory[key] = prog
    return prog


def default_profile_text():
    if not _default:
        with open(DEFAULT_PROFILE, "rb") as f:
            _default.append(f.read())
    return _default[0]


def _load_or_compile(profile, caps):
    text = default_profile_text() if profile is None else profile.encode()
    key = _disk_key(text, caps)
    prog = _read_cached(key)
    if prog is None:
        prog = compile_profile(text, caps)
        _write_cached(key, prog)
    return prog


# ------------------------------------------------------------------ the on-disk cache

def cache_dir():
    return os.path.join(config.run_dir(), "seccomp")


def _disk_key(text, caps):
    from _blake2 import blake2b  # hashlib's import costs ~10 ms here, this ~0.2
    u = os.uname()
    h = blake2b(FORMAT, digest_size=20)
    for part in (text, b"%d" % caps, u.machine.encode(), u.release.encode(), _lib_identity()):
        h.update(b"%d:" % len(part) + part)
    return h.hexdigest()


def _lib_identity():
    """Which libseccomp a compile would load, without loading it: its real file name
    (libseccomp.so.2.5.4), size and mtime."""
    arch = getattr(sys.implementation, "_multiarch", "")
    for d in (f"/usr/lib/{arch}", f"/lib/{arch}", "/usr/lib64", "/lib64", "/usr/lib", "/usr/local/lib"):
        path = f"{d}/{_LIB}"
        try:
            st = os.stat(path)
        except OSError:
            continue
        return f"{os.path.realpath(path)}:{st.st_size}:{st.st_mtime_ns}".encode()
    return b"?"


def _ours_alone(st, kind):
    """Only a directory and files that are ours alone hold programs we install unchecked."""
    return st.st_mode & 0o170000 == kind and st.st_uid == os.geteuid() and not st.st_mode & 0o077


def _open_dir(d):
    """The cache directory as an fd (no symlink followed), or None if it is not ours alone."""
    try:
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    if _ours_alone(os.fstat(fd), 0o040000):
        return fd
    os.close(fd)
    return None


def _read_cached(key):
    dfd = _open_dir(cache_dir())
    if dfd is None:
        return None
    try:
        fd = os.open(key, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    except OSError:
        return None
    finally:
        os.close(dfd)
    try:
        st = os.fstat(fd)
        size = st.st_size
        if not _ours_alone(st, 0o100000) or not 0 < size <= 8 * BPF_MAXINSNS or size % 8:
            return None
        data = os.read(fd, size)
        return data if len(data) == size else None
    finally:
        os.close(fd)


def _write_cached(key, prog):
    """Atomically (a whole file or none); a cache that cannot be written is no error."""
    d = cache_dir()
    try:
        os.makedirs(d, mode=0o700, exist_ok=True)
    except OSError:
        return
    dfd = _open_dir(d)
    if dfd is None:
        return
    tmp = f".{key}.{os.getpid()}.{os.urandom(4).hex()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=dfd)
        try:
            os.write(fd, prog)
        finally:
            os.close(fd)
        os.rename(tmp, key, src_dir_fd=dfd, dst_dir_fd=dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


# ------------------------------------------------------------------ compiling

def compile_profile(text, caps):
    """libseccomp's program for the profile (JSON bytes) and capability mask, behind the
    ENOSYS stub. Raises SpecError for a profile libseccomp refuses."""
    from fastbox import capabilities, seccomp_profile as sp
    from fastbox.errors import SpecError
    native, audit_arch, arch_names = _arch()
    profile = sp.load(text, "(compiling)")
    default = sp.default_action(profile)
    u = os.uname()
    rules = sp.select(profile, set(capabilities.names(caps)), arch_names,
                      sp.kernel_release(u.release))
    lib, ArgCmp = _libseccomp()
    ctx = lib.seccomp_init(default)
    if not ctx:
        raise SpecError("seccomp profile: libseccomp refused its default action")
    try:
        _check(lib.seccomp_attr_set(ctx, 2, default), "bad-architecture action")  # ACT_BADARCH
        _check(lib.seccomp_attr_set(ctx, 8, 2), "binary-tree layout")  # CTL_OPTIMIZE
        for arch in sp.architectures(profile, native)[1:]:
            token = lib.seccomp_arch_resolve_name(arch[len("SCMP_ARCH_"):].lower().encode())
            if not token:
                raise SpecError(f"seccomp profile: unknown architecture {arch}")
            rc = lib.seccomp_arch_add(ctx, token)
            if rc < 0 and rc != -17:  # EEXIST: the native one
                _check(rc, f"architecture {arch}")
        for value, name, conds in rules:
            nr = lib.seccomp_syscall_resolve_name(name.encode())
            if nr == -1:  # unknown to this libseccomp: skipped, as Docker does
                continue
            args = (ArgCmp * max(1, len(conds)))(*[ArgCmp(i, op, a, b) for i, op, a, b in conds])
            _check(lib.seccomp_rule_add_array(ctx, value, nr, len(conds), args), f"rule for {name}")
        prog = _export(lib, ctx)
    finally:
        lib.seccomp_release(ctx)
    highest = highest_syscall(profile, lib)
    if default not in (sp.ALLOW, sp.ACTIONS["SCMP_ACT_LOG"]) and highest >= 0:
        prog = _enosys_stub(audit_arch, highest) + prog
    if len(prog) // 8 > BPF_MAXINSNS:
        raise SpecError(f"seccomp profile: {len(prog) // 8} instructions, the kernel takes {BPF_MAXINSNS}")
    return prog


def highest_syscall(profile, lib=None):
    """The highest native syscall number among the names the profile holds (that this
    libseccomp knows): above it, ENOSYS."""
    from fastbox import seccomp_profile as sp
    lib = lib or _libseccomp()[0]
    nrs = [lib.seccomp_syscall_resolve_name(n.encode()) for n in sp.all_names(profile)]
    return max([n for n in nrs if n >= 0], default=-1)


def _enosys_stub(audit_arch, highest):
    """if arch == native and nr > highest (and not an x32 call): return ENOSYS; else
    on to libseccomp's program, which checks the architecture itself."""
    import struct
    LD_ABS, JEQ, JGT, JGE, RET = 0x20, 0x15, 0x25, 0x35, 0x06
    x32 = audit_arch == ARCHES["x86_64"][1]
    n = 6 if x32 else 5  # where libseccomp's program starts
    insns = [(LD_ABS, 0, 0, 4),                       # A = arch
             (JEQ, 0, n - 2, audit_arch),             # foreign: to the program
             (LD_ABS, 0, 0, 0)]                       # A = nr
    if x32:
        insns.append((JGE, n - 4, 0, X32_BIT))        # x32: to the program (which refuses it)
    insns.append((JGT, 0, 1, highest))
    insns.append((RET, 0, 0, 0x00050000 | ENOSYS))
    return b"".join(struct.pack("=HBBI", *i) for i in insns)


def _export(lib, ctx):
    fd = os.memfd_create("seccomp", os.MFD_CLOEXEC)
    try:
        _check(lib.seccomp_export_bpf(ctx, fd), "export")
        size = os.lseek(fd, 0, os.SEEK_END)
        return os.pread(fd, size, 0)
    finally:
        os.close(fd)


def _check(rc, what):
    if rc < 0:
        from fastbox.errors import SpecError
        raise SpecError(f"seccomp profile: libseccomp refused the {what}: {os.strerror(-rc)}")


def _arch():
    machine = os.uname().machine
    if machine not in ARCHES:
        from fastbox.errors import SpecError
        raise SpecError(f"seccomp: architecture {machine} is not supported; use --security-opt seccomp=unconfined")
    return ARCHES[machine]


def _libseccomp():
    if not _lib:
        import ctypes
        from fastbox.errors import StartError
        try:
            lib = ctypes.CDLL(_LIB)
        except OSError as e:
            raise StartError(f"seccomp: cannot load {_LIB} (Debian: libseccomp2): {e}", "seccomp") from None

        class ArgCmp(ctypes.Structure):  # struct scmp_arg_cmp
            _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                        ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]

        ctx, u32 = ctypes.c_void_p, ctypes.c_uint32
        for name, res, args in (
                ("seccomp_init", ctx, [u32]),
                ("seccomp_release", None, [ctx]),
                ("seccomp_attr_set", ctypes.c_int, [ctx, ctypes.c_int, u32]),
                ("seccomp_arch_resolve_name", u32, [ctypes.c_char_p]),
                ("seccomp_arch_add", ctypes.c_int, [ctx, u32]),
                ("seccomp_syscall_resolve_name", ctypes.c_int, [ctypes.c_char_p]),
                ("seccomp_rule_add_array", ctypes.c_int,
                 [ctx, u32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(ArgCmp)]),
                ("seccomp_export_bpf", ctypes.c_int, [ctx, ctypes.c_int])):
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
        _lib.append((lib, ArgCmp))
    return _lib[0]
