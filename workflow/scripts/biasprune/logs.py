"""Run a rule's script with everything it prints going to the rule's log file."""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Iterator

from .errors import ConfigError

GPU_PEAK = "biasprune: peak GPU memory"
RSS_PEAK = "biasprune: peak resident memory"


def rss_peak() -> str:
    """The line that ends every job's log: the process's peak resident memory in GiB, the kernel's high-water
    mark (Snakemake's benchmark samples every 30 s after the first 15, and misses short peaks). Linux's
    VmHWM, this process's own; getrusage's maxrss elsewhere (on Linux it keeps the parent's size across
    fork and exec, so a small job started by a large process would report the parent's)."""
    try:
        with open("/proc/self/status") as status:
            peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) * 1024
    except (OSError, StopIteration):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return f"{RSS_PEAK} {peak / 2**30:.3f} GiB"


def gpu_peak() -> str | None:
    """The line that ends a job's log where it used a GPU: torch's peak allocation on the current device, in
    GiB (`scripts/gpu-check.sh` reads it); None in a process that never used CUDA."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return f"{GPU_PEAK} {torch.cuda.max_memory_allocated() / 2**30:.3f} GiB"


@contextlib.contextmanager
def log_to(path: str | os.PathLike) -> Iterator[None]:
    """Redirect stdout and stderr (file descriptors too, so library and C output land there) to `path`.

    A ConfigError is also printed as one line on the console, where the user is looking. Every job ends its
    log with its peak resident memory (`rss_peak`), and one that used a GPU with its peak GPU memory
    (`gpu_peak`).
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with open(path, "w") as log:
        for fd in saved:
            os.dup2(log.fileno(), fd)
        try:
            yield
        except ConfigError as error:
            traceback.print_exc()
            with os.fdopen(os.dup(saved[2]), "w") as console:
                print(f"biasprune: {error}", file=console)
            raise SystemExit(1) from None
        except BaseException:
            traceback.print_exc()
            raise
        finally:
            print(rss_peak())
            if peak := gpu_peak():
                print(peak)
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
