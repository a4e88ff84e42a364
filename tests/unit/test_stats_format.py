"""fastbox.runtime.stats parsing of cgroup accounting files, and `fastbox stats`' Docker
layout, on fixed text (the integration tests read the real files)."""
import re

from fastbox.cli import container_commands as cc
from fastbox.runtime import stats


def test_v2_io_stat_sums_devices():
    text = ("254:0 rbytes=4096 wbytes=8388608 rios=1 wios=8 dbytes=0 dios=0\n"
            "8:0 rbytes=100 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n")
    assert stats._v2_io(text) == (4196, 8388608)
    assert stats._v2_io("") == (0, 0)  # no I/O yet: nothing listed
    assert stats._v2_io(None) == (None, None)  # no io controller


def test_v1_io_service_bytes_sums_devices():
    text = ("254:0 Read 0\n254:0 Write 8388608\n254:0 Sync 8388608\n254:0 Async 0\n"
            "254:0 Discard 0\n254:0 Total 8388608\n8:0 Read 512\n8:0 Write 0\nTotal 8389120\n")
    assert stats._v1_io(text) == (512, 8388608)
    assert stats._v1_io("Total 0\n") == (0, 0)
    assert stats._v1_io(None) == (None, None)


def test_memory_used_leaves_out_inactive_file_cache():
    s = {"memory_usage": 100 << 20, "memory_cache": 30 << 20, "memory_limit": 200 << 20}
    assert stats.memory_used(s) == 70 << 20
    assert stats.memory_percent(s) == 35.0
    assert stats.memory_used({"memory_usage": 10, "memory_cache": 50}) == 10
    assert stats.memory_used({"memory_usage": None}) is None
    assert stats.memory_percent({"memory_usage": None, "memory_limit": 5}) is None


def test_keyed_lines():
    assert stats._keyed("usage_usec 12\nnr_throttled 3\nbad\n") == {"usage_usec": 12,
                                                                    "nr_throttled": 3}


def test_sizes_as_docker_prints_them():
    assert cc._size(64 << 20) == "64MiB" and cc._size(1536) == "1.5KiB"
    assert cc._decimal_size(0) == "0B" and cc._decimal_size(8388608) == "8.39MB"
    assert cc._decimal_size(999) == "999B" and cc._decimal_size(1000) == "1kB"


def test_stats_table_columns():
    rows = [cc.STATS_HEADER, ("abc", "web", "0.00%", "1MiB / 2MiB", "50.00%", "--", "0B / 0B", "1")]
    header, row = cc._table(rows).splitlines()
    assert re.split(r"\s{2,}", header) == list(cc.STATS_HEADER)
    assert re.split(r"\s{2,}", row) == list(rows[1])
    assert row.index("web") == header.index("NAME") and row.index("50.00%") == header.index("MEM %")
