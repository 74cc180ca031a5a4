"""Two processes that each run torch on 2 threads, on a 2-core machine: what CI's two test processes do when
both run model jobs. OpenMP's default wait policy spins idle threads, which then steal the cores the other
process needs; OMP_WAIT_POLICY=PASSIVE lets them sleep. Prints each setting's wall time of the pair against one
process alone (the same work, measured in the same run).

    .venv/bin/python bench/thread_contention.py [--threads 2] [--steps 3000]"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

WORK = """
import torch
torch.set_num_threads({threads})
a, w = torch.randn(256, 576), torch.randn(576, 1536)
for _ in range({steps}):
    (a @ w).relu_()
"""


def wall(code: str, processes: int, policy: str | None) -> float:
    """Seconds until `processes` copies of `code`, started together, have all finished."""
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    start = time.perf_counter()
    running = [subprocess.Popen([sys.executable, "-c", code], env=env) for _ in range(processes)]
    for process in running:
        process.wait()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3000)
    args = parser.parse_args()
    code = WORK.format(threads=args.threads, steps=args.steps)
    alone = wall(code, 1, None)
    print(f"one process alone: {alone:.1f} s (a pair sharing the cores perfectly: {2 * alone:.1f} s)")
    for policy in (None, "PASSIVE"):
        pair = wall(code, 2, policy)
        print(f"two at once, OMP_WAIT_POLICY={policy or 'default'}: {pair:.1f} s = {pair / alone:.2f}x alone")


if __name__ == "__main__":
    main()
