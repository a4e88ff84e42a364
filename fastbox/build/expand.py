"""Docker's word rules for instructions that expand variables (ADD, COPY, ENV, EXPOSE, FROM,
LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR, ARG): `$name`, `${name}`, `${name:-word}`,
`${name-word}`, `${name:+word}`, `${name+word}`, `${name:?msg}`; single quotes are literal,
double quotes expand; the escape character makes the next character literal. RUN, CMD and
ENTRYPOINT are left to the shell."""
from fastbox.errors import SpecError

_NAME = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


class ExpandError(SpecError):
    pass


def split_raw(text, escape="\\"):
    """Split on unquoted whitespace, keeping quotes and escapes in each word."""
    words, cur, quote, i, started = [], [], None, 0, False
    while i < len(text):
        ch = text[i]
        if quote is None and ch in " \t":
            if started:
                words.append("".join(cur))
                cur, started = [], False
            i += 1
            continue
        started = True
        cur.append(ch)
        if ch == escape and quote != "'" and i + 1 < len(text):
            cur.append(text[i + 1])
            i += 2
            continue
        if quote is None and ch in "'\"":
            quote = ch
        elif ch == quote:
            quote = None
        i += 1
    if started:
        words.append("".join(cur))
    return words


def expand(word, env, escape="\\"):
    """One word, its variables replaced from env (a dict) and its quotes removed."""
    return _Lexer(word, env, escape).word()


def expand_words(text, env, escape="\\"):
    return [expand(w, env, escape) for w in split_raw(text, escape)]


def expand_text(text, env):
    """A heredoc body without quotes handling: only $name and ${...} are replaced."""
    return _Lexer(text, env, "\\", quotes=False).word()


class _Lexer:
    def __init__(self, text, env, escape, quotes=True):
        self.s, self.i, self.env, self.esc, self.quotes = text, 0, env, escape, quotes

    def peek(self):
        return self.s[self.i] if self.i < len(self.s) else ""

    def word(self, stop=""):
        out = []
        while self.i < len(self.s):
            ch = self.s[self.i]
            if stop and ch in stop:
                break
            self.i += 1
            if self.quotes and ch == "'":
                end = self.s.find("'", self.i)
                if end < 0:
                    raise ExpandError("unexpected end of statement while looking for matching '")
                out.append(self.s[self.i:end])
                self.i = end + 1
            elif self.quotes and ch == '"':
                out.append(self.double())
            elif ch == "$":
                out.append(self.dollar())
            elif self.quotes and ch == self.esc:
                if self.i < len(self.s):
                    out.append(self.s[self.i])
                    self.i += 1
                else:
                    out.append(ch)
            else:
                out.append(ch)
        return "".join(out)

    def double(self):
        out = []
        while True:
            if self.i >= len(self.s):
                raise ExpandError('unexpected end of statement while looking for matching "')
            ch = self.s[self.i]
            self.i += 1
            if ch == '"':
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
            elif ch == self.esc and self.peek() in ('"', "$", self.esc):
                out.append(self.s[self.i])
                self.i += 1
            else:
                out.append(ch)

    def dollar(self):
        if self.peek() == "{":
            self.i += 1
            return self.braced()
        start = self.i
        while self.peek() and self.peek() in _NAME:
            self.i += 1
        name = self.s[start:self.i]
        if not name:
            return "$"
        return self.env.get(name, "")

    def braced(self):
        start = self.i
        while self.peek() and self.peek() in _NAME:
            self.i += 1
        name = self.s[start:self.i]
        if not name:
            raise ExpandError(f"bad substitution: ${{{self.s[start:start + 10]}")
        op = self.peek()
        if op == "}":
            self.i += 1
            return self.env.get(name, "")
        colon = op == ":"
        if colon:
            self.i += 1
            op = self.peek()
        if not op:
            raise ExpandError(f"missing '}}' in substitution ${{{name}")
        if op not in ("-", "+", "?"):
            raise ExpandError(f"unsupported modifier ({op or 'end'}) in substitution ${{{name}")
        self.i += 1
        word = self.word(stop="}")
        if self.peek() != "}":
            raise ExpandError(f"missing '}}' in substitution ${{{name}")
        self.i += 1
        value = self.env.get(name)
        is_set = value is not None and (value != "" or not colon)
        if op == "-":
            return value if is_set else word
        if op == "+":
            return word if is_set else ""
        if not is_set:
            raise ExpandError(f"{name}: {word or 'is not allowed to be empty'}")
        return value
