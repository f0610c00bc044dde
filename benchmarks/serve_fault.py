"""A model replica killed during a load run: the share of requests that still succeed when the
client retries 503 (and only 503), and how long Serve takes to replace the replica.

The application runs two model replicas; once a third of the requests have succeeded one replica
is killed as a crash would (`ray.kill`, no graceful shutdown). Requests in flight on it are
answered 503 + Retry-After by the ingress and retried by the client; new requests go to the
survivor until the replacement is up.

    python benchmarks/serve_fault.py            # writes benchmarks/results/serve_fault.json
"""

from __future__ import annotations

import argparse
import asyncio
import time

from serve_common import caption_payloads, deploy, environment, local_serve, model_dir, write_json


async def load_with_kill(url: str, payload, concurrency: int, requests: int, app: str) -> dict:
    from loadgen import LoadResult, kill_replica, replica_actor_names, run_load, running_replicas

    result = LoadResult()
    load = asyncio.create_task(run_load(f"{url}/v1/caption", payload, concurrency, requests=requests,
                                        retry_statuses=(503,), result=result))
    while result.ok < requests // 3:
        await asyncio.sleep(0.05)
    before = replica_actor_names(app, "CaptionModel")
    victim = kill_replica(app, "CaptionModel")
    killed_at = time.monotonic()
    replaced_after_s = None
    while replaced_after_s is None and time.monotonic() - killed_at < 180:
        # a replica that was not there before, and as many running as before: the dead one may
        # still count as running until the controller notices, but then no new one exists yet
        new = set(replica_actor_names(app, "CaptionModel")) - set(before)
        if new and running_replicas(app, "CaptionModel") >= len(before):
            replaced_after_s = round(time.monotonic() - killed_at, 2)
        await asyncio.sleep(0.25)
    await load
    return {"victim": victim, "replicas_before": before, "replaced_after_s": replaced_after_s,
            "replicas_after": replica_actor_names(app, "CaptionModel"), "load": result.summary()}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a save_pretrained directory (default: build an untrained tiny LLaVA)")
    parser.add_argument("--requests", type=int, default=240)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--out", default="serve_fault.json")
    opts = parser.parse_args(argv)
    args = {"model_path": None, "model_name": "tiny", "torch_threads": 1,
            "batching": {"max_batch_size": 8, "batch_wait_timeout_s": 0.02},
            "model": {"min_replicas": 2, "max_replicas": 2, "max_ongoing_requests": 16, "max_queued_requests": 64,
                      "num_cpus": 0.5, "health_check_period_s": 2},
            "ingress": {"num_cpus": 0.1}}
    with model_dir(opts.model) as model, local_serve() as base:
        url = deploy(base, "fault", {**args, "model_path": model})
        outcome = asyncio.run(load_with_kill(url, caption_payloads(32, opts.max_new_tokens), opts.concurrency,
                                             opts.requests, "fault"))
    report = {"what": "share of caption requests answered 200 when a model replica is killed mid-load "
                      "(client retries 503 only); target >= 0.99",
              "settings": {"requests": opts.requests, "concurrency": opts.concurrency, "model_replicas": 2,
                           "max_new_tokens": opts.max_new_tokens},
              "environment": environment(), **outcome}
    path = write_json(opts.out, report)
    print(f"wrote {path}: success share {outcome['load']['success_share']}, "
          f"replaced after {outcome['replaced_after_s']} s")
    return report


if __name__ == "__main__":
    main()
