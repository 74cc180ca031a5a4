"""The study on a real SLURM cluster: a one-node cluster (munged, slurmctld and slurmd from Debian's
slurm-wlm and munge, on loopback, configured here) runs the test config on the tiny model through
`profiles/slurm`, every job submitted with sbatch. The daemons are stopped at the end."""

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import copy_workflow, job_counts, snakemake, tiny_study

pytestmark = pytest.mark.slow
# Where every SLURM command looks for the cluster's config. The job step strips SLURM_* variables (SLURM_CONF
# too) before its inner `srun`, so the config must sit where a real cluster keeps it.
CONF = Path("/etc/slurm/slurm.conf")
MARK = "# biasprune test cluster (tests/test_slurm.py); removed when the test ends\n"
TOOLS = ("mungekey", "munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo")
# Rules the shipped profile sends to the GPU partition (those that run the model).
GPU_RULES = {"model_check", "answers", "activations", "greedy_scores", "evaluate", "damage"}
# The workflow's localrules: small table jobs that run where Snakemake runs, never through sbatch. Not
# `figure`: two of its figures read mask files, so every figure job is submitted.
LOCAL_RULES = {"all", "prompts", "neutral_prompts", "baseline_metrics", "findings", "tables", "appendix"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def slurm_conf(root: Path, host: str, memory_mb: int) -> str:
    """A one-node cluster on loopback with partitions named like the shipped profile's (`cpu`, `gpu`).

    Accounting storage is off (so `sacct` answers nothing): the profile's status command is `squeue`, and
    MinJobAge keeps finished jobs listed for 10 minutes, longer than any status check waits."""
    return f"""{MARK}\
ClusterName=biasprune-test
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=sched_interval=1
MpiDefault=none
ReturnToService=2
MinJobAge=600
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={memory_mb} State=UNKNOWN
PartitionName=cpu Nodes={host} Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes={host} MaxTime=INFINITE State=UP
"""


@dataclass
class Cluster:
    root: Path

    def run(self, *command: str) -> str:
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def stop(pid_file: Path) -> int | None:
    """SIGTERM the daemon in `pid_file` and wait until it is gone (SIGKILL after 20 s); its pid."""
    if not pid_file.exists():
        return None
    pid = int(pid_file.read_text().split()[0])
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 5)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return pid
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return pid
            time.sleep(0.2)
    return pid


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    missing = [tool for tool in TOOLS if not shutil.which(tool)]
    assert not missing, f"{missing}: installed by scripts/system-packages.sh (make test)"
    assert os.geteuid() == 0, "the cluster test starts munged, slurmctld and slurmd as root (as CI runs)"
    root = tmp_path_factory.mktemp("slurm")
    (root / "state").mkdir()
    (root / "spool").mkdir()
    memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 - 1024
    assert not CONF.exists() or CONF.read_text().startswith(MARK), (
        f"{CONF} exists: a real cluster's, left alone"
    )
    CONF.parent.mkdir(exist_ok=True)
    CONF.write_text(slurm_conf(root, socket.gethostname(), memory_mb))
    try:
        subprocess.run(["mungekey", "--create", f"--keyfile={root}/munge.key"], check=True)
        munged = [
            f"--socket={root}/munge.socket",
            f"--pid-file={root}/munged.pid",
            f"--seed-file={root}/munged.seed",
        ]
        subprocess.run(
            ["munged", "--force", f"--key-file={root}/munge.key", f"--log-file={root}/munged.log", *munged],
            check=True,
        )
        subprocess.run(["slurmctld", "-i"], check=True)
        subprocess.run(["slurmd"], check=True)
        deadline = time.monotonic() + 60
        while (
            "idle" not in subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True).stdout
        ):
            assert time.monotonic() < deadline, (root / "slurmctld.log").read_text()[-2000:]
            time.sleep(0.5)
        yield Cluster(root)
    finally:
        pids = {daemon: stop(root / f"{daemon}.pid") for daemon in ("slurmd", "slurmctld", "munged")}
        CONF.unlink()
    for daemon, pid in pids.items():
        assert pid and not Path(f"/proc/{pid}").exists(), f"{daemon} did not start or is still running"


def cluster_profile(workdir: Path) -> str:
    """profiles/slurm with what this node needs changed, nothing else: one thread and 2 GB per job (2 cores),
    no GPU requests (the node has none: `gpu: 0` for every rule the profile sends to the GPU partition,
    which the plugin then leaves without --gpus), no account, squeue status polls every 2 s, kept job logs."""
    profile = yaml.safe_load((workdir / "profiles/slurm/config.yaml").read_text())
    profile["set-threads"] = dict.fromkeys(profile["set-threads"], 1)
    profile["default-resources"]["mem_mb"] = 2000
    for resources in profile["set-resources"].values():
        resources["mem_mb"] = 2000
        if resources.get("slurm_partition") == "gpu":
            resources["gpu"] = 0
    profile |= {
        "jobs": 4,
        "slurm-no-account": True,
        "slurm-status-command": "squeue",
        "slurm-init-seconds-before-status-checks": 1,
        "seconds-between-status-checks": 2,
        "slurm-keep-successful-logs": True,
        "latency-wait": 5,
        "retries": 0,
    }
    folder = workdir / "profiles/slurm-test"
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(profile))
    return str(folder.relative_to(workdir))


def jobs_of_run(cluster: Cluster, run_id: str) -> list[dict]:
    """Every job SLURM knows of this run (`scontrol show job`, one line per job, key=value)."""
    jobs = []
    for line in cluster.run("scontrol", "show", "job", "-o").splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if fields.get("JobName") == run_id:
            jobs.append(fields)
    return jobs


def test_test_study_runs_through_the_slurm_profile(cluster, tiny_llama_dir, tmp_path):
    workdir = copy_workflow(tmp_path / "study")
    # The test config on the tiny model, with one head method, one scope and one uniform control (the chain
    # through sbatch in few waves of jobs; every scope runs in the tiny chain), and the model declared as a
    # GPU model: its jobs ask for a GPU until the test profile maps that away.
    args = tiny_study(
        workdir,
        tiny_llama_dir,
        scoring={
            "weights": {"methods": []},
            "neurons": {"methods": []},
            "heads": {"methods": ["name_attention"]},
        },
        masks={
            "scopes": ["domain"],
            "random_seeds": 1,
            "matched_seeds": 0,
            "generic": False,
            "random_scopes": ["domain"],
        },
    )
    config = yaml.safe_load((workdir / args[1]).read_text())
    config["model_registry"]["tiny"]["gpus"] = 1
    (workdir / args[1]).write_text(yaml.safe_dump(config))
    profile = cluster_profile(workdir)
    plan = job_counts(snakemake(workdir, "-n", "--profile", profile, *args).stdout)
    result = snakemake(workdir, "--profile", profile, *args)
    output = result.stdout + result.stderr
    run_id = re.search(r"SLURM run ID: (\S+)", output).group(1)
    print("jobs:", plan)
    # The whole chain ran: metric tables and the appendix are there.
    conditions = pd.read_parquet(workdir / "results/tiny/metrics/conditions.parquet")
    assert set(conditions["method"]) == {"name_attention"}
    assert (workdir / "reports/tiny/appendix.html").stat().st_size > 0
    # Every job but the local ones (the table rules and the action-less target `all`) went through sbatch and
    # completed on the node; the local ones ran (their outputs are there) without a submission.
    jobs = jobs_of_run(cluster, run_id)
    submitted = {rule: n for rule, n in plan.items() if rule not in LOCAL_RULES | {"total"}}
    assert {"prompts", "findings", "appendix"} <= set(plan) - set(submitted) and "figure" in submitted
    assert (workdir / "reports/tiny/tables/findings.csv").stat().st_size > 0
    rules = [re.match(r"rule_(\w+?)(?:_wildcards_|$)", job["Comment"]).group(1) for job in jobs]
    assert {rule: rules.count(rule) for rule in set(rules)} == submitted
    assert {job["JobState"] for job in jobs} == {"COMPLETED"}
    for job, rule in zip(jobs, rules, strict=True):
        assert job["Partition"] == ("gpu" if rule in GPU_RULES else "cpu"), (rule, job["Partition"])
        assert "gpu" not in job.get("TresPerNode", "") + job.get("TresPerJob", "") + job.get("TRES", "")
    # SLURM's own log of each job: the job step ran Snakemake for exactly that job.
    logs = sorted((workdir / ".snakemake/slurm_logs").rglob("*.log"))
    assert {log.stem for log in logs} == {job["JobId"] for job in jobs}
    assert all("Finished job" in log.read_text() or "Finished jobid" in log.read_text() for log in logs)
    # Nothing left to do, as seen through the same profile.
    again = snakemake(workdir, "-n", "--profile", profile, *args)
    assert "Nothing to be done" in again.stdout
