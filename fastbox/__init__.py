"""fastbox: a container engine and OCI runtime for Linux built for startup latency.

    import fastbox
    result = fastbox.run("busybox", ["echo", "hi"], capture_output=True)
    result.exit_code, result.stdout, result.timings

Names are imported on first use so that `fastbox run` from the shell pays only for
what it touches.
"""

__version__ = "0.1.0"
__all__ = ["run", "RunResult", "FastboxError", "ImageStore", "Pool", "run_many", "arun",
           "containers", "Container"]


def __getattr__(name):
    if name in ("run", "RunResult"):
        from fastbox import api
        return getattr(api, name)
    if name in ("Pool", "run_many", "arun"):
        from fastbox import burst
        return getattr(burst, name)
    if name == "containers":
        import fastbox.containers
        return fastbox.containers
    if name == "Container":
        from fastbox.containers import Container
        return Container
    if name == "FastboxError":
        from fastbox.errors import FastboxError
        return FastboxError
    if name == "ImageStore":
        from fastbox.images.store import ImageStore
        return ImageStore
    raise AttributeError(f"module 'fastbox' has no attribute {name!r}")
