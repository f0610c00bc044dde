"""Multi-node Ray on one machine: a head and more nodes, each started by `ray start` as its own set
of processes, as on a real cluster, so that tests exercise `ray job submit`, placement across nodes
and the autoscaler without cloud machines.

Three rules keep such a cluster from touching other Ray work on the same machine:
- every port is chosen free (Ray's defaults, 6379, 8265, 10001, 52365, would collide), and all of the
  cluster's state lives in a private, short temp dir (Ray's unix sockets live under it and their
  paths are limited to ~107 characters);
- it has its own auth token: Ray 2.60 turns token auth on whenever ~/.ray/auth_token exists, and
  which token a process picks up would otherwise depend on what ran before it in that process; the
  cluster's processes get it as RAY_AUTH_TOKEN, and this module's clients send it as a header;
- it is stopped by pid: the processes whose command line names that temp dir, and their children
  (job drivers), never by a global `ray stop`.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from loadgen import free_ports

# The venv's `ray`: the raylets it starts run workers with the venv's python, where the project is
# installed.
RAY_BIN = str(Path(sys.executable).with_name("ray"))
OBJECT_STORE_BYTES = 200 * 1024**2  # per node; the test workloads move a few MB
# Never shipped with a job's working dir: the venv, outputs, caches.
WORKING_DIR_EXCLUDES = [".venv", "runs", ".git", ".pytest_cache", "*.egg-info", "__pycache__",
                        "benchmarks/results"]


@dataclass(frozen=True)
class JobOutcome:
    submission_id: str
    status: str  # Ray's JobStatus (SUCCEEDED, FAILED, STOPPED), or TIMEOUT
    returncode: int  # of `ray job submit`
    output: str  # the job's logs, as `ray job submit` streamed them

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCEEDED" and self.returncode == 0


class LocalRayCluster:
    """A head (with dashboard and job server) plus nodes added by `add_node`; use as a context
    manager so that it is stopped whatever happens.

        with LocalRayCluster() as cluster:
            cluster.start_head(num_cpus=1)
            cluster.add_node(num_cpus=1)
            outcome = cluster.submit_job([sys.executable, "jobs/sft.py", ...], working_dir=".",
                                         submission_id="try-sft")
    """

    def __init__(self, env: dict[str, str] | None = None, object_store_memory: int = OBJECT_STORE_BYTES):
        from ray._private.services import get_node_ip_address

        self.temp_dir = Path(tempfile.mkdtemp(prefix="rlhfv-ray-", dir="/tmp"))
        # One IP for every node and for the address drivers use: a driver whose IP differs from its
        # raylet's is refused by Ray.
        self.node_ip = get_node_ip_address()
        self.object_store_memory = object_store_memory
        self.token = secrets.token_hex(32)  # as `ray get-auth-token --generate` makes them
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
                    "RAY_AUTH_TOKEN": self.token, **(env or {})}
        self.env.pop("RAY_AUTH_TOKEN_PATH", None)
        self.env.pop("RAY_ADDRESS", None)  # `ray start --head` must not join some other cluster
        self.gcs_port: int | None = None
        self.dashboard_port: int | None = None

    @property
    def address(self) -> str:
        """The GCS address: `ray start --address`, `ray.init(address=...)`, RAY_ADDRESS."""
        return f"{self.node_ip}:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str:
        """The job server and state API: `ray job submit --address`, `list_nodes(address=...)`."""
        return f"http://127.0.0.1:{self.dashboard_port}"

    def _node_args(self, num_cpus: int, num_gpus: int | None, resources: dict | None,
                   ports: Sequence[int]) -> list[str]:
        """`ray start` arguments of a node; `ports`: 4 distinct free ports for its agents."""
        agent, agent_grpc, runtime_env, metrics = ports
        args = [f"--num-cpus={num_cpus}", f"--node-ip-address={self.node_ip}",
                f"--object-store-memory={self.object_store_memory}",
                f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
                f"--runtime-env-agent-port={runtime_env}", f"--metrics-export-port={metrics}",
                "--disable-usage-stats"]
        if num_gpus is not None:
            args.append(f"--num-gpus={num_gpus}")
        if resources:
            args.append(f"--resources={json.dumps(resources)}")
        return args

    def _ray_start(self, args: list[str], env: dict[str, str] | None) -> None:
        done = subprocess.run([RAY_BIN, "start", *args], env={**self.env, **(env or {})},
                              capture_output=True, text=True, timeout=180)
        if done.returncode:
            raise RuntimeError(f"ray start {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")

    def start_head(self, num_cpus: int, num_gpus: int | None = None, resources: dict | None = None,
                   autoscaling_config: str | None = None, env: dict[str, str] | None = None,
                   port: int | None = None) -> None:
        gcs, self.dashboard_port, client, *node_ports = free_ports(7)
        self.gcs_port = port or gcs
        args = ["--head", f"--port={self.gcs_port}", f"--temp-dir={self.temp_dir}",
                "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}",
                f"--ray-client-server-port={client}", *self._node_args(num_cpus, num_gpus, resources, node_ports)]
        if autoscaling_config:
            args.append(f"--autoscaling-config={autoscaling_config}")
        self._ray_start(args, env)
        self.wait_for(lambda: len(self.alive_nodes()) == 1, timeout=60, what="the head's dashboard")

    def add_node(self, num_cpus: int, num_gpus: int | None = None, resources: dict | None = None) -> None:
        """A worker node; it takes the head's temp dir (Ray hands it over), so `stop` finds it."""
        before = len(self.alive_nodes())
        self._ray_start([f"--address={self.address}", *self._node_args(num_cpus, num_gpus, resources, free_ports(4))],
                        None)
        self.wait_for(lambda: len(self.alive_nodes()) > before, timeout=60, what="the new node")

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def alive_nodes(self) -> list[dict]:
        """Alive nodes as the state API reports them: node_id, is_head_node, resources_total, ..."""
        from ray.util.state import StateApiClient
        from ray.util.state.common import ListApiOptions, StateResource

        client = StateApiClient(self.dashboard_url, headers=self.headers)
        nodes = client.list(StateResource.NODES, ListApiOptions(filters=[("state", "=", "ALIVE")], detail=True),
                            raise_on_missing_output=False)
        return [node if isinstance(node, dict) else node.__dict__ for node in nodes]

    def list_actors(self, class_name: str) -> list[dict]:
        """Actors of `class_name`, alive or dead (the GCS keeps recent dead ones): node_id, state, ..."""
        from ray.util.state import StateApiClient
        from ray.util.state.common import ListApiOptions, StateResource

        client = StateApiClient(self.dashboard_url, headers=self.headers)
        actors = client.list(StateResource.ACTORS, ListApiOptions(filters=[("class_name", "=", class_name)],
                                                                   detail=True), raise_on_missing_output=False)
        return [actor if isinstance(actor, dict) else actor.__dict__ for actor in actors]

    def worker_nodes(self) -> list[dict]:
        return [node for node in self.alive_nodes() if not node["is_head_node"]]

    @staticmethod
    def wait_for(predicate: Callable[[], object], timeout: float, what: str, every: float = 1.0):
        """Poll `predicate` until it returns something truthy, which is returned. A predicate that
        raises (the dashboard still starting, or busy) has no answer yet: it is asked again."""
        deadline = time.monotonic() + timeout
        error: Exception | None = None
        while True:
            try:
                value = predicate()
                if value:
                    return value
            except Exception as exc:  # noqa: BLE001 - any failure to ask means "not yet"
                error = exc
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout:.0f} s for {what}") from error
            time.sleep(every)

    def submit_job(self, entrypoint: Sequence[str], working_dir: str, submission_id: str,
                   env_vars: dict[str, str] | None = None, timeout: float = 600) -> JobOutcome:
        """`ray job submit --working-dir DIR -- ENTRYPOINT`, as a user runs it; waits for the end."""
        from ray.job_submission import JobSubmissionClient

        runtime_env = {"excludes": WORKING_DIR_EXCLUDES, "env_vars": env_vars or {}}
        command = [RAY_BIN, "job", "submit", f"--address={self.dashboard_url}", f"--submission-id={submission_id}",
                   f"--working-dir={working_dir}", f"--runtime-env-json={json.dumps(runtime_env)}",
                   "--", *entrypoint]
        client = JobSubmissionClient(self.dashboard_url, headers=self.headers)
        try:
            done = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:  # stop the job, keep its logs for the report
            client.stop_job(submission_id)
            return JobOutcome(submission_id, "TIMEOUT", -1, client.get_job_logs(submission_id))
        status = client.get_job_status(submission_id)
        return JobOutcome(submission_id, str(getattr(status, "value", status)), done.returncode,
                          done.stdout + done.stderr)

    def processes(self) -> list:
        """This cluster's processes: those naming its temp dir (GCS, raylets, dashboard, agents,
        workers, the autoscaler and the nodes it launched), and their children (job drivers)."""
        import psutil

        marker = str(self.temp_dir)
        found = {}
        for proc in psutil.process_iter(["pid", "cmdline"]):
            try:
                if any(part.endswith(marker) or f"{marker}/" in part for part in proc.info["cmdline"] or ()):
                    found[proc.pid] = proc
                    for child in proc.children(recursive=True):
                        found[child.pid] = child
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        found.pop(os.getpid(), None)
        return list(found.values())

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM this cluster's processes, SIGKILL what outlives `grace_s`, remove the temp dir."""
        import psutil

        procs = self.processes()
        for proc in procs:
            try:
                proc.send_signal(signal.SIGTERM)
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(procs, timeout=grace_s)
        for proc in alive + self.processes():  # and anything spawned while the others were ending
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> "LocalRayCluster":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
