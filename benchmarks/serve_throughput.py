"""Captions/s and p50/p99 latency of the Serve application, side by side in one run:

- `batched`: `@serve.batch` with max_batch_size = the highest concurrency;
- `unbatched`: the same application with max_batch_size 1;
- `plain_loop`: no server at all, `generate` called once per image in one process: the floor a
  user would write by hand (it has no concurrency: requests are served one after another).

Each configuration is measured `--repeats` times, interleaved (batched, unbatched, plain loop, then
again), and the medians are reported with the ratios. Both Serve apps run at once with one model
replica each and the same torch threads as the plain loop; clients are closed-loop (`concurrency`
requests in flight), over HTTP on localhost, JSON bodies with base64 PNG scenes.

    python benchmarks/serve_throughput.py                       # untrained tiny model, CPU
    python benchmarks/serve_throughput.py --model runs/demo/base_model --device cuda --threads 4

Writes benchmarks/results/serve_throughput.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import statistics
import time

from serve_common import caption_payloads, deploy, environment, local_serve, model_dir, write_json


def app_args(model: str, max_batch_size: int, threads: int, device: str, max_new_tokens: int,
             batch_wait_s: float) -> dict:
    return {
        "model_path": model, "model_name": "tiny", "device": device, "torch_threads": threads,
        "batching": {"max_batch_size": max_batch_size, "batch_wait_timeout_s": batch_wait_s},
        # one replica, nothing refused: the benchmark measures serving, not admission control
        "model": {"min_replicas": 1, "max_replicas": 1, "max_ongoing_requests": max(64, 2 * max_batch_size),
                  "max_queued_requests": -1, "num_cpus": 0.5, "num_gpus": 1 if device == "cuda" else 0},
        "ingress": {"num_cpus": 0.1},
        "limits": {"max_new_tokens": max_new_tokens, "default_max_new_tokens": max_new_tokens},
    }


def plain_loop(model_path: str, payload, requests: int, threads: int, device: str) -> dict:
    """`generate` per request in this process, as a hand-written loop would: decode, generate, next."""
    import torch
    from PIL import Image

    from rlhfv_ray.model.generate import GenerationSettings, generate
    from rlhfv_ray.model.compute import ComputeSettings, load_for_inference
    from rlhfv_ray.scene_world.grammar import DESCRIPTION_PROMPTS

    torch.set_num_threads(threads)
    model, processor = load_for_inference(model_path, ComputeSettings(device=device))
    latencies, tokens = [], []
    started = time.perf_counter()
    for i in range(requests):
        body = payload(i)
        t0 = time.perf_counter()
        image = Image.open(io.BytesIO(base64.b64decode(body["image"]))).convert("RGB")
        [g] = generate(model, processor, [image], [DESCRIPTION_PROMPTS[0]], GenerationSettings(body["max_new_tokens"]))
        latencies.append(time.perf_counter() - t0)
        tokens.append(g.completion_tokens)
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {"requests": requests, "ok": requests, "elapsed_s": round(elapsed, 3),
            "throughput_rps": round(requests / elapsed, 3),
            "p50_ms": round(1000 * latencies[len(latencies) // 2], 1),
            "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 1),
            "mean_completion_tokens": round(statistics.mean(tokens), 2)}


def median_of(runs: list[dict]) -> dict:
    keys = ("throughput_rps", "p50_ms", "p99_ms", "mean_completion_tokens", "mean_batch_size", "success_share")
    out = {k: round(statistics.median(r[k] for r in runs), 3) for k in keys if all(r.get(k) is not None for r in runs)}
    out["repeats"] = len(runs)
    out["requests_per_repeat"] = runs[0]["requests"]
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a save_pretrained directory (default: build an untrained tiny LLaVA)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each replica and of the plain loop")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    # Closed-loop clients re-send as their answers arrive, spread out by the proxy and ingress; a
    # wait of a few ms then starts a batch with the first few and the rest form more small batches.
    parser.add_argument("--batch-wait", type=float, default=0.05, help="batch_wait_timeout_s of the batched app")
    parser.add_argument("--min-requests", type=int, default=32, help="per run; at least 2 x concurrency")
    parser.add_argument("--out", default="serve_throughput.json")
    opts = parser.parse_args(argv)
    levels = [int(c) for c in opts.concurrency.split(",")]
    payload = caption_payloads(64, opts.max_new_tokens)
    n_requests = {c: max(opts.min_requests, 2 * c) for c in levels}
    raw: dict[str, dict[str, list]] = {"batched": {}, "unbatched": {}, "plain_loop": {}}

    from loadgen import run_load

    with model_dir(opts.model) as model, local_serve() as base:
        urls = {mode: deploy(base, mode, app_args(model, size, opts.threads, opts.device, opts.max_new_tokens,
                                                  opts.batch_wait if size > 1 else 0.0))
                for mode, size in (("batched", max(levels)), ("unbatched", 1))}
        for url in urls.values():  # warm-up: first requests pay for lazy initialisation
            asyncio.run(run_load(f"{url}/v1/caption", payload, 4, requests=8))
        for repeat in range(opts.repeats):
            for c in levels:
                for mode, url in urls.items():
                    result = asyncio.run(run_load(f"{url}/v1/caption", payload, c, requests=n_requests[c]))
                    raw[mode].setdefault(str(c), []).append(result.summary())
                    print(f"repeat {repeat} {mode:9s} c={c:<3d} {result.summary()}", flush=True)
            run = plain_loop(model, payload, max(n_requests.values()) // 2, opts.threads, opts.device)
            raw["plain_loop"].setdefault("serial", []).append(run)
            print(f"repeat {repeat} plain_loop {run}", flush=True)

    results = {mode: {level: median_of(runs) for level, runs in by_level.items()} for mode, by_level in raw.items()}
    plain = results["plain_loop"]["serial"]["throughput_rps"]
    ratios = {}
    for c in map(str, levels):
        batched, unbatched = results["batched"][c]["throughput_rps"], results["unbatched"][c]["throughput_rps"]
        ratios[f"c{c}"] = {"batched_over_unbatched": round(batched / unbatched, 2),
                           "batched_over_plain_loop": round(batched / plain, 2),
                           "unbatched_over_plain_loop": round(unbatched / plain, 2)}
    report = {
        "what": "captions/s and latency (ms) of POST /v1/caption; medians over repeats",
        "settings": {"device": opts.device, "torch_threads": opts.threads, "max_new_tokens": opts.max_new_tokens,
                     "batched_max_batch_size": max(levels), "batch_wait_timeout_s": opts.batch_wait,
                     "concurrency": levels, "repeats": opts.repeats, "requests": n_requests,
                     "model": opts.model or "tiny LLaVA, random weights"},
        "environment": environment(),
        "results": results,
        "ratios": ratios,
        "raw": raw,
    }
    path = write_json(opts.out, report)
    print(f"wrote {path}\nratios: {ratios}")
    return report


if __name__ == "__main__":
    main()
