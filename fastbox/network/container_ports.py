"""A container's ports as its record names them: what it publishes (-p, and -P's while it
has an endpoint) and what it exposes (its image's EXPOSE, --expose, and what it
publishes), as (port, proto) pairs, for `ps --filter` and `inspect`."""


def published(record):
    spec = record.get("spec") or {}
    out = set()
    for item in spec.get("publish") or ():
        port, _, proto = item.rpartition(":")[2].partition("/")
        out.add((int(port), proto))
    if spec.get("publish_all") and record["status"] == "running":
        from fastbox.network import endpoints
        ep = endpoints.load(record["id"])
        out |= {(cp, proto) for proto, _, _, cp in (ep.ports if ep else ())}
    return out


def exposed(record):
    out = set()
    for item in [*(record.get("image_exposed") or ()), *((record.get("spec") or {}).get("expose") or ())]:
        port, _, proto = item.partition("/")
        out.add((int(port), proto or "tcp"))
    return out | published(record)
