"""Shared set-up of the Serve benchmarks: a model, a local Ray + Serve stopped by handle, apps
deployed from ServeArgs, scene images as request bodies, results written as JSON."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `python benchmarks/x.py` from a checkout without an install
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Ray starts its workers at nice 15 (the raylet keeps priority). On a machine shared with other
# work that would starve the Serve replicas but not the plain loop, which runs in this process:
# every part of the comparison runs at the same priority instead.
os.environ.setdefault("RAY_worker_niceness", "0")

RESULTS = ROOT / "benchmarks" / "results"


def untrained_tiny_model(out: Path) -> str:
    """The demo's tiny LLaVA (tokenizer, processor, architecture) with random weights, saved with
    save_pretrained: its text is noise, so it rarely emits eos and every request generates exactly
    max_new_tokens (equal work per request, a fair comparison). No pretraining stage: seconds."""
    import torch

    from rlhfv_ray.scene_world.build_model import world_tokenizer
    from rlhfv_ray.scene_world.tiny_llava import TinyLlavaSpec, build_processor, build_tiny_llava

    torch.manual_seed(0)
    spec = TinyLlavaSpec()
    tokenizer = world_tokenizer(spec.tokenizer_vocab_size)
    build_tiny_llava(tokenizer, spec).save_pretrained(out)
    build_processor(tokenizer, spec).save_pretrained(out)
    return str(out)


@contextlib.contextmanager
def model_dir(path: str | None):
    if path:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="serve-bench-model-") as tmp:
        yield untrained_tiny_model(Path(tmp))


@contextlib.contextmanager
def local_serve(num_cpus: float = 2):
    """A private local Ray with Serve on a free port; both stopped by their own handles."""
    import ray
    from ray import serve

    from loadgen import free_port

    ray.init(num_cpus=num_cpus, include_dashboard=False, configure_logging=False, log_to_driver=False,
             runtime_env={"env_vars": {"DS_ACCELERATOR": os.environ["DS_ACCELERATOR"]}})
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            serve.shutdown()
    finally:
        ray.shutdown()


def deploy(base_url: str, name: str, args: dict) -> str:
    from ray import serve

    from serve_app.app import build

    serve.run(build(args), name=name, route_prefix=f"/{name}")
    return f"{base_url}/{name}"


def caption_payloads(n_images: int, max_new_tokens: int):
    from rlhfv_ray.scene_world.render import image_to_png_bytes, render_scene
    from rlhfv_ray.scene_world.scene import sample_scene

    images = [base64.b64encode(image_to_png_bytes(render_scene(sample_scene(1000 + i)))).decode()
              for i in range(n_images)]
    return lambda i: {"image": images[i % n_images], "max_new_tokens": max_new_tokens}


def environment() -> dict:
    import ray
    import torch
    import transformers

    from machine import machine  # the CPU model and commit

    return {**machine(), "python": platform.python_version(), "torch": torch.__version__, "ray": ray.__version__,
            "transformers": transformers.__version__,
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "ray_worker_niceness": os.environ.get("RAY_worker_niceness"),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S")}


def write_json(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path
