"""Full RELRO for every binary fastbox installs: the extension the container child runs
in (a CLONE_VM clone of Python, on its parent's TLS, which must never resolve a lazily
bound symbol through the dynamic linker), the exec helper, the monitor and the client.

The installed files are read as ELF here (program headers and the dynamic section), so
the test needs no binutils: GNU_RELRO must be there, and a file that has a dynamic
section must ask for BIND_NOW (DT_BIND_NOW, DF_BIND_NOW in DT_FLAGS or DF_1_NOW in
DT_FLAGS_1). A static file without one binds nothing lazily.
"""
import importlib.util
import os
import struct
import sys

import pytest

PT_DYNAMIC, PT_GNU_RELRO = 2, 0x6474E552
DT_NULL, DT_BIND_NOW, DT_FLAGS, DT_FLAGS_1 = 0, 24, 30, 0x6FFFFFFB
DF_BIND_NOW, DF_1_NOW = 0x8, 0x1


def elf_facts(path):
    """(program header types, dynamic entries {tag: value} or None) of a 64-bit
    little-endian ELF file."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, f"{path}: not ELF64 LE"
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    types, dynamic = set(), None
    for i in range(phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", data,
                                                                 phoff + i * phentsize)
        types.add(p_type)
        if p_type == PT_DYNAMIC:
            dynamic = {}
            for off in range(p_offset, p_offset + p_filesz, 16):
                tag, value = struct.unpack_from("<qQ", data, off)
                if tag == DT_NULL:
                    break
                dynamic[tag] = value
    return types, dynamic


def installed():
    core = importlib.util.find_spec("fastbox._core").origin
    return {
        "_core": core,
        "monitor": os.path.join(os.path.dirname(core), "libexec", "fastbox-monitor"),
        "enter": os.path.join(os.path.dirname(core), "libexec", "fastbox-enter"),
        "client": os.path.join(os.path.dirname(sys.executable), "fastbox"),
    }


@pytest.mark.parametrize("name", ["_core", "monitor", "enter", "client"])
def test_full_relro(name):
    path = installed()[name]
    types, dynamic = elf_facts(path)
    assert PT_GNU_RELRO in types, f"{path}: no GNU_RELRO segment"
    if dynamic is None:
        return  # static, nothing bound at run time
    now = (DT_BIND_NOW in dynamic or dynamic.get(DT_FLAGS, 0) & DF_BIND_NOW
           or dynamic.get(DT_FLAGS_1, 0) & DF_1_NOW)
    assert now, f"{path}: lazily bound (no BIND_NOW): link with -z now"


def test_static_ones_are_static():
    """The client, the exec helper and the monitor are static on purpose (no loader per
    command or per `run -d`, no libc in the helper): they have no dynamic section, and
    the check above cannot pass vacuously for the Python extension."""
    paths = installed()
    assert elf_facts(paths["client"])[1] is None
    assert elf_facts(paths["enter"])[1] is None
    assert elf_facts(paths["monitor"])[1] is None
    assert elf_facts(paths["_core"])[1] is not None
