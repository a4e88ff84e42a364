"""A subset of Go's text/template, enough for Docker's --format strings:

    {{.Names}}  {{.State.Status}}  {{json .}}  {{json .Config}}  {{.Names | upper}}
    {{index .Labels "k"}}  {{join .Args ","}}  {{printf "%s-%d" .Name .Pid}}
    {{range .Mounts}}{{.Source}} {{end}}  {{if .Running}}up{{else}}down{{end}}  {{- trim -}}

Data is Python values: a dict or an object's attribute is a field, a callable field is
called with the action's arguments (Docker's `.Label "k"`). An unknown field is an
error (TemplateError), as with Docker's typed contexts, never an empty string.

`table ...` and the named formats (`json`, `table`) are Docker's, handled by
format_rows(), which also lays out tables as Docker's tabwriter does.
"""
import json as json_module
import re

from fastbox.errors import SpecError


class TemplateError(SpecError):
    """A --format that does not parse, or names what the data does not have."""

    exit_code = 1


# ---------------------------------------------------------------- lexing and parsing

_DECLARE = re.compile(r"\s*(\$\w+)\s*(?:,\s*(\$\w+)\s*)?:=\s*(.*)\Z", re.S)


def _tokens(action, where):
    """The words of one action: ('field', 'A.B'), ('dot',), ('var', '$x'), ('str', s),
    ('num', n), ('ident', name), ('|',), ('(',), (')',), and ('chain', 'A.B') right after
    a ')' that a field follows: (index .L 0).Name."""
    out, i, n = [], 0, len(action)
    while i < n:
        c = action[i]
        if c.isspace():
            i += 1
        elif c in "|()":
            out.append((c,))
            i += 1
            if c == ")" and action[i:i + 1] == "." and action[i + 1:i + 2].isidentifier():
                j = i  # (X).Field: a field of the group's value
                while j < n and not action[j].isspace() and action[j] not in '|()"`':
                    j += 1
                out.append(("chain", action[i + 1:j]))
                i = j
        elif c == '"':
            j, buf = i + 1, []
            while j < n and action[j] != '"':
                if action[j] == "\\" and j + 1 < n:
                    buf.append({"n": "\n", "t": "\t", '"': '"', "\\": "\\"}.get(action[j + 1],
                                                                               action[j + 1]))
                    j += 2
                else:
                    buf.append(action[j])
                    j += 1
            if j >= n:
                raise TemplateError(f"template: {where}: unterminated quoted string")
            out.append(("str", "".join(buf)))
            i = j + 1
        elif c == "`":
            j = action.find("`", i + 1)
            if j < 0:
                raise TemplateError(f"template: {where}: unterminated raw quoted string")
            out.append(("str", action[i + 1:j]))
            i = j + 1
        else:
            j = i
            while j < n and not action[j].isspace() and action[j] not in '|()"`':
                j += 1
            word = action[i:j]
            i = j
            if word == ".":
                out.append(("dot",))
            elif word.startswith("."):
                out.append(("field", word[1:]))
            elif word.startswith("$"):
                out.append(("var", word))
            elif word.lstrip("-").replace(".", "", 1).isdigit():
                out.append(("num", float(word) if "." in word else int(word)))
            elif word in ("true", "false"):
                out.append(("bool", word == "true"))
            elif word == "nil":
                out.append(("nil",))
            else:
                out.append(("ident", word))
    return out


def _split(text):
    """Text and actions: [('text', s) | ('action', inner, position)], with {{- and -}}
    trimming the white space beside them."""
    parts, i = [], 0
    while True:
        start = text.find("{{", i)
        if start < 0:
            parts.append(("text", text[i:]))
            return parts
        end = text.find("}}", start + 2)
        if end < 0:
            raise TemplateError(f"template: unclosed action at character {start + 1}")
        inner = text[start + 2:end]
        chunk = text[i:start]
        if inner.startswith("- ") or inner == "-":
            chunk = chunk.rstrip()
            inner = inner[1:]
        trim_after = inner.endswith(" -")
        if trim_after:
            inner = inner[:-1]
        parts.append(("text", chunk))
        parts.append(("action", inner.strip(), start + 1))
        i = end + 2
        if trim_after:
            while i < len(text) and text[i].isspace():
                i += 1


class Template:
    """A parsed template: Template(text).execute(data) -> str."""

    def __init__(self, text):
        self.text = text
        parts = _split(text)
        self.nodes, rest, end = self._parse(parts, 0)
        if end is not None:
            raise TemplateError(f"template: unexpected {{{{{end}}}}} in {text!r}")

    def _parse(self, parts, i):
        """Nodes up to an {{end}} or {{else}} (returned as the stop word) or the end."""
        nodes = []
        while i < len(parts):
            part = parts[i]
            i += 1
            if part[0] == "text":
                if part[1]:
                    nodes.append(("text", part[1]))
                continue
            inner, where = part[1], f"{self.text!r}:{part[2]}"
            if inner.startswith("/*") and inner.endswith("*/"):
                continue
            word = inner.split(None, 1)[0] if inner else ""
            if word in ("end", "else"):
                return nodes, i, inner
            if word in ("if", "range", "with"):
                node, i = self._block(word, inner[len(word):], parts, i, where)
                nodes.append(node)
                continue
            if not inner:
                raise TemplateError(f"template: {where}: missing value for command")
            nodes.append(("pipe", _tokens(inner, where), where))
        return nodes, i, None

    def _block(self, word, rest, parts, i, where):
        """An if/range/with block from after its opening action to its {{end}};
        {{else if X}} is an if nested in the else branch that shares that {{end}}.
        A range may declare its variables first: {{range $v := X}}, {{range $k, $v := X}}."""
        names = ()
        if word == "range":
            m = _DECLARE.match(rest)
            if m:
                names, rest = tuple(n for n in m.group(1, 2) if n), m.group(3)
        pipe = _tokens(rest, where)
        if not pipe:
            raise TemplateError(f"template: {where}: missing value for {word}")
        body, i, stop = self._parse(parts, i)
        other = []
        if stop is not None and stop.split(None, 1)[0] == "else":
            rest = stop[4:].strip()
            if rest.startswith("if ") and word == "if":
                nested, i = self._block("if", rest[3:], parts, i, where)
                return (word, pipe, body, [nested], where), i
            other, i, stop = self._parse(parts, i)
        if stop != "end":
            raise TemplateError(f"template: {where}: unexpected EOF (no {{{{end}}}} for {word})")
        if names:
            return (word, pipe, body, other, where, names), i
        return (word, pipe, body, other, where), i

    def execute(self, data):
        out = []
        _run(self.nodes, data, {"$": data}, out)
        return "".join(out)


# ---------------------------------------------------------------- evaluation

def _run(nodes, dot, variables, out):
    for node in nodes:
        kind = node[0]
        if kind == "text":
            out.append(node[1])
        elif kind == "pipe":
            out.append(_text(_pipeline(node[1], dot, variables, node[2])))
        elif kind == "if":
            _, pipe, body, other, where = node
            _run(body if _truth(_pipeline(pipe, dot, variables, where)) else other, dot,
                 variables, out)
        elif kind == "with":
            _, pipe, body, other, where = node
            value = _pipeline(pipe, dot, variables, where)
            if _truth(value):
                _run(body, value, variables, out)
            else:
                _run(other, dot, variables, out)
        elif kind == "range":
            _, pipe, body, other, where, *declared = node
            value = _pipeline(pipe, dot, variables, where)
            # a map in its keys' order, as Go ranges over one
            pairs = sorted(value.items()) if isinstance(value, dict) else list(enumerate(value or ()))
            for key, item in pairs:
                scope = variables
                if declared:
                    names = declared[0]
                    scope = dict(variables, **{names[-1]: item})
                    if len(names) == 2:
                        scope[names[0]] = key
                _run(body, item, scope, out)
            if not pairs:
                _run(other, dot, variables, out)


def _pipeline(tokens, dot, variables, where):
    """Commands separated by |, each one's value the last argument of the next."""
    commands, current, depth = [], [], 0
    for t in tokens:
        if t[0] == "|" and depth == 0:
            commands.append(current)
            current = []
            continue
        depth += t[0] == "("
        depth -= t[0] == ")"
        current.append(t)
    commands.append(current)
    value, piped = None, False
    for command in commands:
        if not command:
            raise TemplateError(f"template: {where}: missing command in pipeline")
        value = _command(command, dot, variables, where, (value,) if piped else ())
        piped = True
    return value


def _command(tokens, dot, variables, where, extra):
    args = _arguments(tokens, dot, variables, where)
    head = tokens[0]
    if head[0] == "ident":
        return _call(head[1], args[1:] + list(extra), where)
    if head[0] == "field" and (len(args) > 1 or extra):
        # .Label "k": a method given its arguments
        return _field(dot, head[1], where, args[1:] + list(extra))
    if len(args) > 1 or extra:
        raise TemplateError(f"template: {where}: can't give argument to non-function")
    return args[0]


def _arguments(tokens, dot, variables, where):
    """Each argument's value; a parenthesised group is a pipeline of its own. The head
    (an identifier) stays a name."""
    values, i = [], 0
    while i < len(tokens):
        t = tokens[i]
        if t[0] == "(":
            depth, j = 1, i + 1
            while j < len(tokens) and depth:
                depth += tokens[j][0] == "("
                depth -= tokens[j][0] == ")"
                j += 1
            if depth:
                raise TemplateError(f"template: {where}: unclosed left paren")
            value = _pipeline(tokens[i + 1:j - 1], dot, variables, where)
            if j < len(tokens) and tokens[j][0] == "chain":
                value = _field(value, tokens[j][1], where)
                j += 1
            values.append(value)
            i = j
            continue
        if t[0] == ")":
            raise TemplateError(f"template: {where}: unexpected right paren")
        if t[0] == "ident":
            values.append(t[1] if i == 0 else _call(t[1], [], where))
        elif t[0] == "dot":
            values.append(dot)
        elif t[0] == "field":
            values.append(_field(dot, t[1], where) if i > 0 or len(tokens) == 1
                          or tokens[0][0] != "field" else None)
        elif t[0] == "var":
            name, _, path = t[1].partition(".")
            if name not in variables:
                raise TemplateError(f"template: {where}: undefined variable: {name}")
            values.append(_field(variables[name], path, where) if path else variables[name])
        elif t[0] == "nil":
            values.append(None)
        else:
            values.append(t[1])
        i += 1
    return values


def _field(value, path, where, args=()):
    """value.A.B..., where a dict's key or an object's attribute is a field; the last
    one, if callable, is called with args."""
    names = path.split(".")
    for k, name in enumerate(names):
        last = k == len(names) - 1
        if isinstance(value, dict):
            if name not in value:
                raise TemplateError(f'template: {where}: executing at <.{path}>: '
                                    f"can't evaluate field {name}")
            value = value[name]
        elif value is not None and not name.startswith("_") and hasattr(value, name):
            value = getattr(value, name)
        else:
            kind = "nil" if value is None else type(value).__name__
            raise TemplateError(f"template: {where}: executing at <.{path}>: "
                                f"can't evaluate field {name} in type {kind}")
        if callable(value):
            value = value(*args) if last else value()
        elif last and args:
            raise TemplateError(f"template: {where}: {name} is not a method but has "
                                "arguments")
    return value


def _truth(value):
    return bool(value) if not isinstance(value, (int, float)) or isinstance(value, bool) \
        else value != 0


def _text(value):
    """How Go prints a value: nil as <no value>, lists as [a b], maps as map[k:v]."""
    if value is None:
        return "<no value>"
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_text(v)}" for k, v in sorted(value.items())) + "]"
    if hasattr(value, "template_data"):
        return _text(value.template_data())
    return str(value)


def _json(value):
    """Go's json.Marshal: compact, with <, > and & escaped as it does for HTML."""
    if hasattr(value, "template_data"):
        value = value.template_data()
    text = json_module.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_plain)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _plain(value):
    if hasattr(value, "template_data"):
        return value.template_data()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _index(value, *keys):
    for key in keys:
        if isinstance(value, dict):
            value = value.get(key, "")
        else:
            try:
                value = value[key]
            except (IndexError, TypeError) as e:
                raise TemplateError(f"template: error calling index: {e}") from None
    return value


def _printf(fmt, *args):
    import re
    go = {"v": "s", "q": "r", "t": "s"}
    converted = re.sub(r"%([-+ #0]*\d*(?:\.\d+)?)([a-zA-Z%])",
                       lambda m: "%" + m[1] + go.get(m[2], m[2]) if m[2] != "%" else "%%", fmt)
    values = tuple(_text(a) if not isinstance(a, (int, float)) or isinstance(a, bool) else a
                   for a in args)
    try:
        return converted % values
    except (TypeError, ValueError) as e:
        raise TemplateError(f"template: error calling printf: {e}") from None


def _len(value):
    try:
        return len(value)
    except TypeError:
        raise TemplateError(f"template: error calling len: len of {type(value).__name__}") \
            from None


FUNCTIONS = {
    "json": _json,
    "upper": lambda s: _text(s).upper(),
    "lower": lambda s: _text(s).lower(),
    "title": lambda s: _text(s).title(),
    "join": lambda items, sep: sep.join(_text(i) for i in items or ()),
    "split": lambda s, sep: _text(s).split(sep),
    "index": _index,
    "printf": _printf,
    "print": lambda *a: "".join(_text(x) for x in a),
    "println": lambda *a: " ".join(_text(x) for x in a) + "\n",
    "len": _len,
    "truncate": lambda s, n: _text(s)[:int(n)],
    "pad": lambda s, left, right: " " * int(left) + _text(s) + " " * int(right),
    "not": lambda v: not _truth(v),
    "and": lambda *a: next((x for x in a if not _truth(x)), a[-1] if a else None),
    "or": lambda *a: next((x for x in a if _truth(x)), a[-1] if a else None),
    "eq": lambda a, *b: any(a == x for x in b),
    "ne": lambda a, b: a != b,
}


def _call(name, args, where):
    fn = FUNCTIONS.get(name)
    if fn is None:
        raise TemplateError(f'template: {where}: function "{name}" not defined')
    try:
        return fn(*args)
    except TemplateError:
        raise
    except TypeError as e:
        raise TemplateError(f"template: {where}: wrong number of args for {name}: {e}") \
            from None


# ---------------------------------------------------------------- Docker's --format

class Headers:
    """The data a table's header row is made from: each field is its column title."""

    def __init__(self, titles):
        self._titles = titles

    def __getattr__(self, name):
        if name.startswith("_") or name not in self._titles:
            raise AttributeError(name)
        return _Title(self._titles[name])


class _Title(str):
    """A column title; a field of it (`.State.Status` in a header) is the title still."""

    def __getattr__(self, name):
        if not name[:1].isupper():  # Go's exported fields only
            raise AttributeError(name)
        return self

    def __call__(self, *args):
        return self


def unescape(fmt):
    """Docker's CLI turns a typed \\t and \\n into a tab and a newline."""
    return fmt.replace("\\t", "\t").replace("\\n", "\n")


def inspect_text(fmt, objects):
    """What an `inspect` prints: the objects as an indented JSON list or, given --format,
    the template run on each, a line each."""
    if not fmt:
        import json
        return json.dumps(objects, indent=4)
    template = Template(unescape(fmt))
    return "\n".join(template.execute(o) for o in objects)


def format_rows(fmt, rows, *, default, titles):
    """The lines --format FMT prints for rows: "table" / "table TEMPLATE" (a header row
    of titles, then the rows, aligned as Docker's tabwriter aligns them), "json" (each
    row as one JSON line), or a template run once per row. default is the command's
    table template (without "table"), used for an empty or "table" format."""
    fmt = fmt if fmt not in (None, "") else "table"
    if fmt == "json":
        fmt = "{{json .}}"
    table = fmt.startswith("table")
    if table:
        body = fmt[len("table"):].strip() or default
        template = Template(unescape(body))
        lines = [template.execute(Headers(titles))] + [template.execute(r) for r in rows]
        return tabwriter(lines)
    template = Template(unescape(fmt))
    return [template.execute(r) for r in rows]


def tabwriter(lines, minwidth=10, padding=3):
    """Go's text/tabwriter as Docker sets it up (minwidth 10, padding 3, spaces): each
    tab-terminated cell is padded to its column's width; the last cell is not."""
    split = [line.split("\t") for line in lines]
    widths = {}
    for cells in split:
        for i, cell in enumerate(cells[:-1]):
            widths[i] = max(widths.get(i, 0), len(cell) + padding, minwidth)
    return ["".join(cell.ljust(widths[i]) for i, cell in enumerate(cells[:-1])) + cells[-1]
            for cells in split]
