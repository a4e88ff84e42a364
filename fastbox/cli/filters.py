"""Docker's --filter KEY=VALUE, shared by `ps` and `network ls`: the items split and
checked against the keys a command knows, then matched as Docker matches them (values of
one key or'ed, keys and'ed); label=KEY[=VALUE] against a labels dict."""
from fastbox.errors import SpecError


def split(items, known):
    """["name=web", "label=a"] -> {"name": ["web"], "label": ["a"]}; a one-line error for
    an item without "=" or a key not in known."""
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep:
            raise SpecError(f"bad format of filter (expected name=value): {item}")
        if key not in known:
            raise SpecError(f"invalid filter '{key}'")
        out.setdefault(key, []).append(value)
    return out


def matches(obj, filters, matchers):
    return all(any(matchers[key](obj, v) for v in values) for key, values in filters.items())


def labels_match(labels, wanted):
    """label=KEY (present) or label=KEY=VALUE (present with that value)."""
    key, sep, value = wanted.partition("=")
    return key in labels and (not sep or labels[key] == value)
