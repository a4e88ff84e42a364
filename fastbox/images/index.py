"""The store's tag index (index.json, an OCI image index): which manifest each
normalized reference names, and the checks on names and digests that become file names."""
from fastbox.errors import ImageError, SpecError
from fastbox.images.lookup import HEX as _HEX
from fastbox.images.reference import normalize

INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"
# The index or manifest list a pulled manifest was chosen from: `repo@<that digest>` resolves.
INDEX_DIGEST = "io.fastbox.index.digest"


def find_tag(index, name):
    """The manifest digest index.json gives `name`; a digest reference matches any entry of
    the same repository with that digest, or pulled from an index with that digest."""
    digest = name.partition("@")[2]
    for entry in index["manifests"]:
        entry_name = ref_name(entry)
        if entry_name == name:
            return entry["digest"]
        if digest and entry_name and repository(entry_name) == repository(name) and \
                digest in (entry["digest"], entry["annotations"].get(INDEX_DIGEST)):
            return entry["digest"]
    return None


def dangling(entries, digest):
    entry = next(e for e in entries if e["digest"] == digest)
    return {k: v for k, v in entry.items() if k != "annotations"}


def new_index():
    return {"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": []}


def ref_name(entry):
    return (entry.get("annotations") or {}).get(REF_NAME)


def repository(name):
    """"docker.io/library/busybox" from "docker.io/library/busybox:1@sha256:..."."""
    name = name.partition("@")[0]
    colon = name.rfind(":")
    return name[:colon] if colon > name.rfind("/") else name


def tag_name(ref):
    name = normalize(ref)
    if "@" in name:
        raise SpecError(f"refusing to create a tag with a digest reference: '{ref}'")
    return name


def try_normalize(ref):
    try:
        return normalize(ref)
    except SpecError:
        return None


def id_prefix(ref):
    """The hex of an image id or id prefix ("sha256:ab12", "ab12"), else None."""
    hex_part = ref[7:] if ref.startswith("sha256:") else ref
    return hex_part if 0 < len(hex_part) <= 64 and _HEX.issuperset(hex_part) else None


def hex_of(digest):
    """The hex of a sha256 digest, checked: it becomes a file name."""
    if type(digest) is str and len(digest) == 71 and digest.startswith("sha256:") \
            and _HEX.issuperset(digest[7:]):
        return digest[7:]
    raise ImageError(f"unsupported or malformed digest {digest!r}")
