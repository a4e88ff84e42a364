"""Moved to fastbox/bench/peers.py, so that `fastbox bench startup --compare` can use it.

This module is that one: importing `peers` from benchmarks/ gives the very module object
`fastbox.bench.peers` (same names, same signatures, and setting an attribute here changes
it there), and running this file runs that module's main.

    python benchmarks/peers.py -n 20
"""
import os
import sys

try:
    from fastbox.bench import peers as _impl
except ImportError:  # run from a checkout with an interpreter that has not installed fastbox
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from fastbox.bench import peers as _impl

if __name__ == "__main__":
    sys.exit(_impl.main())
sys.modules[__name__] = _impl
