"""Fault injection for the fault test of tests/test_tiny_chain.py: Python imports this file at start-up when
its folder is on PYTHONPATH. In the job script of rule $BIASPRUNE_KILL_RULE it sends SIGKILL the moment the job is about to
publish a finished result (the os.replace of its temporary file onto `results/...`): the worst moment, all
the work done and nothing committed. $BIASPRUNE_KILL_SCOPE is `job` (the job's process alone, as the OOM
killer or scancel would) or `run` (the job and Snakemake with it: its process group, as when a node is lost).
Only the first such moment dies: the path is written to $BIASPRUNE_KILL_RECORD, which disarms the rest."""

import os
import signal
import sys

RULE = os.environ.get("BIASPRUNE_KILL_RULE", "")
RECORD = os.environ.get("BIASPRUNE_KILL_RECORD", "")

if RULE and RECORD and sys.argv and sys.argv[0].endswith(f".{RULE}.py"):
    replace = os.replace

    def replace_or_die(source, destination, *args, **kwargs):
        target = os.fspath(destination)
        if "results" in target.split(os.sep) and not os.path.exists(RECORD):
            with open(RECORD, "w") as record:
                record.write(os.path.abspath(target))
            if os.environ.get("BIASPRUNE_KILL_SCOPE") == "run":
                os.killpg(os.getpgrp(), signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGKILL)
        return replace(source, destination, *args, **kwargs)

    os.replace = replace_or_die
