"""What `fastbox images` shows of an image, as `docker images` shows it: the fields its
--format templates see, and the REPOSITORY[:TAG] argument that picks rows."""
import time

from fastbox.cli.ps_view import human_duration
from fastbox.state import timestamps

DEFAULT_TABLE = "{{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
TITLES = {"Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID", "Digest": "DIGEST",
          "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE",
          "VirtualSize": "VIRTUAL SIZE", "Containers": "CONTAINERS"}
FIELDS = ("Containers", "CreatedAt", "CreatedSince", "Digest", "ID", "Repository", "Size",
          "Tag", "VirtualSize")


class ImageRow:
    def __init__(self, row, trunc=True, now=None):
        self._r = row
        self._trunc = trunc
        self._now = time.time() if now is None else now

    @property
    def Repository(self):
        return self._r["repository"]

    @property
    def Tag(self):
        return self._r["tag"]

    @property
    def ID(self):
        full = self._r["id"]
        return full.split(":")[-1][:12] if self._trunc else full

    @property
    def Digest(self):
        return self._r.get("digest") or "<none>"

    def _created(self):
        try:
            return timestamps.parse(self._r.get("created") or "")
        except ValueError:
            return None

    @property
    def CreatedSince(self):
        when = self._created()
        return "N/A" if when is None else human_duration(max(0.0, self._now - when)) + " ago"

    @property
    def CreatedAt(self):
        when = self._created()
        return "" if when is None else time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC",
                                                     time.gmtime(when))

    @property
    def Size(self):
        from fastbox.cli.image_commands import human_size
        return human_size(self._r.get("size") or 0)

    VirtualSize = Size

    @property
    def Containers(self):
        return "N/A"

    def template_data(self):
        return {name: getattr(self, name) for name in FIELDS}


def matches(row, wanted):
    """`docker images REPOSITORY[:TAG]`: the repository as shown (busybox,
    127.0.0.1:5000/app), and the tag if one is given."""
    if not wanted:
        return True
    repo, tag = wanted, None
    slash = wanted.rfind("/")
    colon = wanted.rfind(":")
    if colon > slash:
        repo, tag = wanted[:colon], wanted[colon + 1:]
    if repo.startswith("docker.io/"):
        repo = repo[len("docker.io/"):]
    if repo.startswith("library/"):
        repo = repo[len("library/"):]
    return row["repository"] == repo and (tag is None or row["tag"] == tag)
