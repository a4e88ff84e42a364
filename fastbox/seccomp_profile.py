"""seccomp profiles in Docker's JSON format (what `--security-opt seccomp=FILE` takes and
fastbox/runtime/seccomp_default.json holds): checked once when a spec is made, and the
rules that apply to one container (its capabilities, this machine's architecture and
kernel) picked out for fastbox.runtime.seccomp to compile.

Semantics as Docker and runc give them: a rule applies when every capability in its
`includes.caps` is granted and none in `excludes.caps`; `includes.arches`/`minKernel`
likewise. Conditions on different arguments of one rule must all hold; several on the
same argument are separate rules (any may hold). A rule whose action is the default
action is dropped; names this libseccomp does not know are skipped.
"""
from fastbox.errors import SpecError

EPERM = 1
# The kernel's SECCOMP_RET_* values (libseccomp's SCMP_ACT_*), the errno or trace data
# going into the low 16 bits.
ACTIONS = {"SCMP_ACT_KILL": 0, "SCMP_ACT_KILL_THREAD": 0, "SCMP_ACT_KILL_PROCESS": 0x80000000,
           "SCMP_ACT_TRAP": 0x00030000, "SCMP_ACT_ERRNO": 0x00050000,
           "SCMP_ACT_TRACE": 0x7ff00000, "SCMP_ACT_LOG": 0x7ffc0000, "SCMP_ACT_ALLOW": 0x7fff0000}
WITH_DATA = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")
ALLOW = ACTIONS["SCMP_ACT_ALLOW"]
# libseccomp's enum scmp_compare
OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
       "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}
FLAGS = ("SECCOMP_FILTER_FLAG_TSYNC",)  # meaningless for a one-thread child: accepted
_U64 = 1 << 64


def load(text, where):
    """Parse and check a profile; returns it as a dict. where names it in errors."""
    import json
    try:
        profile = json.loads(text)
    except ValueError as e:
        raise SpecError(f"invalid seccomp profile {where}: {e}") from None
    try:
        check(profile)
    except (TypeError, ValueError) as e:
        raise SpecError(f"invalid seccomp profile {where}: {e}") from None
    return profile


def compact(profile):
    """The profile as one line of JSON (what a spec, and so a record, keeps)."""
    import json
    return json.dumps(profile, separators=(",", ":"))


def check(p):
    if not isinstance(p, dict):
        raise TypeError("expected a JSON object")
    if "defaultAction" not in p:
        raise ValueError("no defaultAction")
    action(p["defaultAction"], p.get("defaultErrnoRet"), "defaultAction")
    for key in ("listenerPath", "listenerMetadata"):
        if p.get(key):
            raise ValueError(f"{key} (SCMP_ACT_NOTIFY) is not supported")
    for flag in _list(p.get("flags"), "flags"):
        if flag not in FLAGS:
            raise ValueError(f"flag {flag!r} is not supported")
    for arch in _list(p.get("architectures"), "architectures"):
        _arch_name(arch)
    for entry in _list(p.get("archMap"), "archMap"):
        _arch_name(_dict(entry, "archMap entry").get("architecture"))
        for sub in _list(entry.get("subArchitectures"), "subArchitectures"):
            _arch_name(sub)
    for i, rule in enumerate(_list(p.get("syscalls"), "syscalls")):
        _check_rule(_dict(rule, f"syscalls[{i}]"), i)


def _check_rule(rule, i):
    where = f"syscalls[{i}]"
    names = rule_names(rule)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"{where}: names must be a non-empty list of syscall names")
    action(rule.get("action"), rule.get("errnoRet"), f"{where}.action")
    for arg in _list(rule.get("args"), f"{where}.args"):
        _dict(arg, f"{where}.args entry")
        if arg.get("index") not in range(6):
            raise ValueError(f"{where}: argument index must be 0-5, not {arg.get('index')!r}")
        if arg.get("op") not in OPS:
            raise ValueError(f"{where}: unknown op {arg.get('op')!r}")
        for key in ("value", "valueTwo"):
            v = arg.get(key, 0)
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < _U64:
                raise ValueError(f"{where}: {key} must be an unsigned 64-bit number")
    for key in ("includes", "excludes"):
        f = _dict(rule.get(key) or {}, f"{where}.{key}")
        for cap in _list(f.get("caps"), f"{where}.{key}.caps"):
            if not isinstance(cap, str):
                raise ValueError(f"{where}: capability names are strings")
        _list(f.get("arches"), f"{where}.{key}.arches")
        if f.get("minKernel") is not None:
            _kernel_version(f["minKernel"], f"{where}.{key}.minKernel")


def action(name, errno_ret, where):
    """An action name (and its errnoRet) -> the filter's return value."""
    if name == "SCMP_ACT_NOTIFY":
        raise ValueError(f"{where}: SCMP_ACT_NOTIFY is not supported")
    if name not in ACTIONS:
        raise ValueError(f"{where}: unknown action {name!r}")
    if name not in WITH_DATA:
        return ACTIONS[name]
    data = EPERM if errno_ret is None else errno_ret
    if not isinstance(data, int) or isinstance(data, bool) or not 0 <= data <= 0xffff:
        raise ValueError(f"{where}: errnoRet must be a number 0-65535")
    return ACTIONS[name] | data


def rule_names(rule):
    names = rule.get("names")
    if names is None and rule.get("name") is not None:  # the old format: one name
        names = [rule["name"]]
    return names if isinstance(names, list) else None


def default_action(p):
    return action(p["defaultAction"], p.get("defaultErrnoRet"), "defaultAction")


def architectures(p, native):
    """The SCMP_ARCH_* names the filter covers: the native one, and what the profile
    adds for it (archMap) or lists (architectures). Only these ABIs get past the
    filter's architecture check."""
    arches = [native]
    for entry in p.get("archMap") or ():
        if entry["architecture"] == native:
            arches += entry.get("subArchitectures") or []
    arches += p.get("architectures") or []
    return list(dict.fromkeys(arches))


def select(p, caps, arch_names, kernel):
    """The rules that apply: [(return value, syscall name, [(index, op, a, b), ...])],
    each list of conditions one libseccomp rule. caps: the container's capability
    names; arch_names: this architecture's spellings in includes/excludes; kernel:
    (major, minor)."""
    default = default_action(p)
    out = []
    for rule in p.get("syscalls") or ():
        if not _applies(rule, caps, arch_names, kernel):
            continue
        value = action(rule["action"], rule.get("errnoRet"), "action")
        if value == default:
            continue
        for conditions in _condition_sets(rule.get("args") or []):
            out.extend((value, name, conditions) for name in rule_names(rule))
    return out


def all_names(p):
    """Every syscall the profile names: the highest of their numbers is where the
    profile's knowledge ends (newer syscalls get ENOSYS)."""
    return {n for rule in p.get("syscalls") or () for n in rule_names(rule)}


def _applies(rule, caps, arch_names, kernel):
    inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
    if inc.get("caps") and not all(c in caps for c in inc["caps"]):
        return False
    if inc.get("arches") and not any(a in arch_names for a in inc["arches"]):
        return False
    if inc.get("minKernel") and kernel < _kernel_version(inc["minKernel"], "minKernel"):
        return False
    if exc.get("caps") and any(c in caps for c in exc["caps"]):
        return False
    if exc.get("arches") and any(a in arch_names for a in exc["arches"]):
        return False
    if exc.get("minKernel") and kernel >= _kernel_version(exc["minKernel"], "minKernel"):
        return False
    return True


def _condition_sets(args):
    """runc's rule: conditions on distinct arguments form one rule (all must hold);
    when one argument has several, each condition becomes a rule of its own."""
    conds = [(a["index"], OPS[a["op"]], a.get("value", 0), a.get("valueTwo", 0)) for a in args]
    indexes = [c[0] for c in conds]
    if len(set(indexes)) < len(indexes):
        return [[c] for c in conds]
    return [conds]


def kernel_release(release):
    """'6.18.44-fc' -> (6, 18)."""
    return _kernel_version(release.split("-")[0], "kernel release")


def _kernel_version(text, where):
    parts = str(text).split(".")
    try:
        return (int(parts[0]), int(parts[1]) if len(parts) > 1 else 0)
    except ValueError:
        raise ValueError(f"{where}: expected a kernel version such as 4.8, not {text!r}") from None


def _arch_name(name):
    if not isinstance(name, str) or not name.startswith("SCMP_ARCH_"):
        raise ValueError(f"unknown architecture {name!r}")
    return name


def _list(value, where):
    if value is None:
        return []
    if not isinstance(value, list):
        raise TypeError(f"{where} must be a list")
    return value


def _dict(value, where):
    if not isinstance(value, dict):
        raise TypeError(f"{where} must be an object")
    return value
