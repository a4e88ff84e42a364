"""Containerfile text -> instructions with their line numbers, as Docker's parser reads it.

Parser directives (`# syntax=`, `# escape=`, `# check=`) are read only before the first
comment, blank line or instruction. A line ending in the escape character continues on
the next; comment lines inside a continuation are dropped. RUN, COPY and ADD take heredocs
(`<<EOF`, `<<-EOF`, `<<"EOF"`), whose bodies follow the instruction line. Variables are not
expanded here (fastbox.build.expand does that once the scope is known); the words of each
instruction are split with their quotes and escapes kept, so that expansion can honour them.
A malformed file stops with DockerfileError naming its line.
"""
import json
import re

from fastbox.errors import SpecError

INSTRUCTIONS = ("ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK",
                "LABEL", "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME",
                "WORKDIR")
HEREDOC_INSTRUCTIONS = ("RUN", "COPY", "ADD")
FLAGS = {"FROM": ("platform",), "RUN": ("mount", "network", "security"),
         "COPY": ("from", "chown", "chmod", "link", "parents", "exclude"),
         "ADD": ("chown", "chmod", "checksum", "keep-git-dir", "link", "exclude"),
         "HEALTHCHECK": ("interval", "timeout", "start-period", "start-interval", "retries")}
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_HEREDOC = re.compile(r"<<(-?)(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\2")


class DockerfileError(SpecError):
    """A malformed Containerfile: the message names the file and line."""


class Heredoc:
    __slots__ = ("name", "body", "expand", "chomp")

    def __init__(self, name, body, expand, chomp):
        self.name, self.body, self.expand, self.chomp = name, body, expand, chomp

    def __repr__(self):
        return f"Heredoc({self.name!r}, {self.body!r})"


class Instruction:
    """One instruction: cmd (upper case), flags {name: [values]}, rest (the text after the
    flags, unexpanded), json (the exec form's list, else None), heredocs, line (1-based)."""

    __slots__ = ("cmd", "flags", "rest", "json", "heredocs", "line", "original")

    def __init__(self, cmd, flags, rest, json_form, heredocs, line, original):
        self.cmd, self.flags, self.rest, self.json = cmd, flags, rest, json_form
        self.heredocs, self.line, self.original = heredocs, line, original

    def flag(self, name, default=None):
        values = self.flags.get(name)
        return values[-1] if values else default

    def __repr__(self):
        return f"Instruction({self.cmd} {self.rest!r} @{self.line})"


class Dockerfile:
    __slots__ = ("directives", "escape", "instructions", "name")

    def __init__(self, directives, escape, instructions, name):
        self.directives, self.escape, self.instructions, self.name = (
            directives, escape, instructions, name)


def parse(text, name="Dockerfile"):
    """The instructions of a Containerfile's text."""
    lines = text.replace("\r\n", "\n").split("\n")
    if lines and lines[0].startswith("\ufeff"):
        lines[0] = lines[0][1:]
    directives, start = _directives(lines, name)
    escape = directives.get("escape", "\\")
    if escape not in ("\\", "`"):
        raise DockerfileError(f"{name}:{start}: invalid escape token '{escape}': it must be "
                              "` or \\")
    out, i = [], start
    while i < len(lines):
        stripped = lines[i].strip()
        if not stripped or stripped.startswith("#"):
            i += 1
            continue
        first = i
        logical, i = _logical_line(lines, i, escape, name)
        if not logical.strip():
            continue
        inst, i = _instruction(logical, lines, i, first + 1, escape, name)
        out.append(inst)
    return Dockerfile(directives, escape, out, name)


def _directives(lines, name):
    found = {}
    for i, line in enumerate(lines):
        m = _DIRECTIVE.match(line.strip()) if line.strip().startswith("#") else None
        if not m:
            return found, i
        key = m.group(1).lower()
        if key not in ("syntax", "escape", "check"):
            return found, i  # an unknown directive is a comment, and ends the directives
        if key in found:
            raise DockerfileError(f"{name}:{i + 1}: only one {key} parser directive can be used")
        found[key] = m.group(2)
    return found, len(lines)


def _continues(line, escape):
    """The line without its trailing escape character if it continues, else None."""
    body = line.rstrip(" \t")
    if body.endswith(escape):
        # An escape that is itself escaped does not continue the line.
        n = len(body) - len(body.rstrip(escape))
        if n % 2 == 1:
            return body[:-1]
    return None


def _logical_line(lines, i, escape, name):
    """Join physical lines from i while they end with the escape character; comment and
    blank lines inside the continuation are skipped (Docker drops them)."""
    parts = []
    first = i
    while i < len(lines):
        line = lines[i]
        i += 1
        if parts and (not line.strip() or line.lstrip().startswith("#")):
            continue
        cont = _continues(line, escape)
        if cont is None:
            parts.append(line)
            return "".join(parts), i
        parts.append(cont)
    if parts:  # the file ended inside a continuation: Docker takes what it has
        return "".join(parts), i
    raise DockerfileError(f"{name}:{first + 1}: unexpected end of file")


def _instruction(logical, lines, i, line_no, escape, name):
    text = logical.strip()
    parts = re.split(r"[ \t]+", text, maxsplit=1)
    word, rest = parts[0], (parts[1] if len(parts) > 1 else "")
    cmd = word.upper()
    if cmd not in INSTRUCTIONS:
        raise DockerfileError(f"{name}:{line_no}: unknown instruction: {word}")
    heredocs = []
    if cmd in HEREDOC_INSTRUCTIONS or (cmd == "ONBUILD" and rest.split()[:1]
                                        and rest.split()[0].upper() in HEREDOC_INSTRUCTIONS):
        for m in _HEREDOC.finditer(rest):
            chomp, quote, delim = m.group(1) == "-", m.group(2), m.group(3)
            body, i = _heredoc_body(lines, i, delim, chomp, line_no, name)
            heredocs.append(Heredoc(delim, body, not quote, chomp))
    flags, rest = _flags(cmd, rest, line_no, name)
    json_form = _json_form(rest) if cmd in ("RUN", "CMD", "ENTRYPOINT", "SHELL", "COPY", "ADD",
                                            "VOLUME", "HEALTHCHECK") else None
    if cmd == "SHELL" and json_form is None:
        raise DockerfileError(f"{name}:{line_no}: SHELL requires the arguments to be in JSON form")
    if not rest.strip():
        raise DockerfileError(f"{name}:{line_no}: {cmd} requires at least one argument")
    return Instruction(cmd, flags, rest.strip(), json_form, heredocs, line_no, logical), i


def _heredoc_body(lines, i, delim, chomp, line_no, name):
    body = []
    while i < len(lines):
        line = lines[i]
        i += 1
        check = line.lstrip("\t") if chomp else line
        if check == delim:
            return "".join(b + "\n" for b in body), i
        body.append(check)
    raise DockerfileError(f"{name}:{line_no}: unterminated heredoc {delim}: no line '{delim}' "
                          "ends it")


def _flags(cmd, rest, line_no, name):
    """Leading --name=value words (FROM, RUN, COPY, ADD, HEALTHCHECK)."""
    flags = {}
    allowed = FLAGS.get(cmd)
    if allowed is None:
        return flags, rest
    while True:
        rest = rest.lstrip(" \t")
        if not rest.startswith("--"):
            return flags, rest
        m = re.match(r"--([a-zA-Z][a-zA-Z0-9-]*)(=(\S*))?(?:[ \t]+|$)", rest)
        if not m:
            raise DockerfileError(f"{name}:{line_no}: {cmd}: malformed flag {rest.split()[0]!r}")
        flag = m.group(1)
        if flag not in allowed:
            raise DockerfileError(f"{name}:{line_no}: unknown flag: --{flag}")
        value = m.group(3) if m.group(2) else ("true" if flag in ("link", "parents", "keep-git-dir")
                                                else None)
        if value is None:
            raise DockerfileError(f"{name}:{line_no}: {cmd}: --{flag} needs a value (--{flag}=...)")
        flags.setdefault(flag, []).append(value)
        rest = rest[m.end():]


def _json_form(rest):
    """The exec form's list of strings if rest is a JSON array of strings (else the shell form)."""
    text = rest.strip()
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None
