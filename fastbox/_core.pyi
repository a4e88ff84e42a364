PHASES: tuple[str, ...]
TIMES: tuple[str, ...]

class CoreError(OSError):
    phase: str
    what: str
    times: dict[str, int]

def spawn_detached(plan: object, monitor_argv: list[str], keep_fds: list[int], console_fd: int = -1) -> tuple[int, int, dict[str, int]]: ...
def new_netns() -> int: ...
def spawn(plan: object) -> tuple[int, int, dict[str, int]]: ...
