"""-v's nocopy and --mount's volume-nocopy: kept in the spec and its record strings."""
import pytest

from fastbox.errors import SpecError
from fastbox.run_options import mount_option
from fastbox.spec import RunSpec, parse_volume, spec_from_dict, spec_to_dict


@pytest.mark.parametrize("text, ro, nocopy", [
    ("data:/d", False, False), ("data:/d:nocopy", False, True), ("data:/d:ro,nocopy", True, True),
    ("data:/d:nocopy,rw", False, True), ("data:/d:ro", True, False)])
def test_named_volume_options(text, ro, nocopy):
    v = parse_volume(text)
    assert (v.kind, v.source, v.target, v.readonly, v.nocopy) == ("volume", "data", "/d", ro, nocopy)


def test_anonymous_volume_with_nocopy():
    v = parse_volume("/d:nocopy")
    assert (v.kind, v.anonymous, v.nocopy, v.target) == ("volume", True, True, "/d")


@pytest.mark.parametrize("text", ["/host:/d:nocopy", "./rel:/d:ro,nocopy", "data:/d:ro,rw",
                                  "data:/d:nocopy,bogus"])
def test_refused(text):
    with pytest.raises(SpecError):
        parse_volume(text)


def test_mount_volume_nocopy():
    assert mount_option("type=volume,src=v,dst=/d,volume-nocopy") == ("volume", "v:/d:nocopy")
    assert mount_option("type=volume,src=v,dst=/d,volume-nocopy=true,readonly") == \
        ("volume", "v:/d:ro,nocopy")
    assert mount_option("type=volume,src=v,dst=/d,volume-nocopy=false") == ("volume", "v:/d")


def test_nocopy_survives_the_record():
    spec = RunSpec("busybox", volumes=["data:/d:ro,nocopy", "other:/o"])
    again = spec_from_dict(spec_to_dict(spec))
    assert [(v.source, v.readonly, v.nocopy) for v in again.volumes] == [
        ("data", True, True), ("other", False, False)]
