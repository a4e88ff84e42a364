"""Startup-latency and copy-up benchmarking, shipped with fastbox (`fastbox bench`)."""
