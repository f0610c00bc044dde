"""Client-side tools for load and fault runs against a running service (tests and benchmarks/):
closed-loop concurrent HTTP load with optional retries of 503, and killing a replica.

Needs `httpx` (the `dev` extra); the service itself does not.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class LoadResult:
    sent: int = 0  # logical requests (a retried one counts once)
    ok: int = 0
    statuses: Counter = field(default_factory=Counter)  # final status per request ("error:<name>" for transport)
    retries: int = 0
    retried: Counter = field(default_factory=Counter)  # "<status> <error code>" of each retried answer
    latencies_s: list[float] = field(default_factory=list)  # of successful requests, retries included
    completion_tokens: list[int] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)  # from each answer's timing, where it has one
    elapsed_s: float = 0.0

    @property
    def success_share(self) -> float:
        return self.ok / self.sent if self.sent else 0.0

    def summary(self) -> dict:
        lat = sorted(self.latencies_s)

        def pct(p: float) -> float | None:
            return round(1000 * lat[min(len(lat) - 1, int(p * len(lat)))], 1) if lat else None

        return {"requests": self.sent, "ok": self.ok, "success_share": round(self.success_share, 4),
                "statuses": {str(k): v for k, v in sorted(self.statuses.items(), key=str)},
                "retries": self.retries, "retried": dict(self.retried), "elapsed_s": round(self.elapsed_s, 3),
                "throughput_rps": round(self.ok / self.elapsed_s, 3) if self.elapsed_s else None,
                "p50_ms": pct(0.5), "p99_ms": pct(0.99),
                "mean_completion_tokens": round(statistics.mean(self.completion_tokens), 2)
                if self.completion_tokens else None,
                "mean_batch_size": round(statistics.mean(self.batch_sizes), 2) if self.batch_sizes else None}


async def run_load(url: str, payload: Callable[[int], dict], concurrency: int, *, requests: int | None = None,
                   duration_s: float | None = None, stop: asyncio.Event | None = None,
                   retry_statuses: tuple[int, ...] = (), max_retries: int = 30, max_backoff_s: float = 0.5,
                   timeout_s: float = 120.0, headers: dict | None = None,
                   result: LoadResult | None = None) -> LoadResult:
    """`concurrency` clients in a closed loop POST `payload(i)` (a JSON body) to `url` until
    `requests` were sent, `duration_s` passed, or `stop` is set. A response with a status in
    `retry_statuses` is retried after its Retry-After (capped at `max_backoff_s`). Pass `result`
    to watch the counts while the load runs."""
    import httpx

    if requests is None and duration_s is None and stop is None:
        raise ValueError("give requests, duration_s or stop")
    result = result if result is not None else LoadResult()
    deadline = None if duration_s is None else time.monotonic() + duration_s
    counter = iter(range(requests if requests is not None else 2**62))

    def more() -> bool:
        return not (deadline is not None and time.monotonic() >= deadline) and not (stop is not None and stop.is_set())

    async def one(client: httpx.AsyncClient, index: int) -> None:
        start = time.perf_counter()
        result.sent += 1
        for attempt in range(max_retries + 1):
            try:
                response = await client.post(url, json=payload(index), headers=headers)
            except httpx.HTTPError as error:
                result.statuses[f"error:{type(error).__name__}"] += 1
                return
            if response.status_code in retry_statuses and attempt < max_retries:
                result.retries += 1
                result.retried[f"{response.status_code} {_error_code(response)}"] += 1
                await asyncio.sleep(min(float(response.headers.get("retry-after", 0.1) or 0.1), max_backoff_s))
                continue
            result.statuses[response.status_code] += 1
            if response.status_code == 200:
                result.ok += 1
                result.latencies_s.append(time.perf_counter() - start)
                body = response.json()
                if "completion_tokens" in (body.get("usage") or {}):
                    result.completion_tokens.append(body["usage"]["completion_tokens"])
                if "batch_size" in (body.get("timing") or {}):
                    result.batch_sizes.append(body["timing"]["batch_size"])
            return

    async def worker(client: httpx.AsyncClient) -> None:
        while more():
            index = next(counter, None)
            if index is None:
                return
            await one(client, index)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=timeout_s, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*[worker(client) for _ in range(concurrency)])
        result.elapsed_s = time.perf_counter() - started
    return result


def _error_code(response) -> str:
    try:
        return response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):  # e.g. the proxy's own plain-text 503
        return "-"


def replica_actor_names(app: str, deployment: str) -> list[str]:
    """Names of the live replica actors of a deployment (Serve names them SERVE_REPLICA::app#deployment#id)."""
    import ray

    prefix = f"SERVE_REPLICA::{app}#{deployment}#"
    return sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(prefix))


def running_replicas(app: str, deployment: str) -> int:
    from ray import serve

    status = serve.status().applications.get(app)
    if status is None or deployment not in status.deployments:
        return 0
    return int(status.deployments[deployment].replica_states.get("RUNNING", 0))


def kill_replica(app: str, deployment: str) -> str:
    """Kill one replica of a deployment as a crash would (no graceful shutdown); return its name."""
    import ray

    name = replica_actor_names(app, deployment)[0]
    ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
    return name


def free_ports(n: int) -> list[int]:
    """`n` distinct free ports: every socket stays bound until all are picked, so the OS cannot hand
    the same port out twice (independent picks did, and `ray start` refused the collision)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for sock in sockets:
            sock.bind(("", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    return free_ports(1)[0]
