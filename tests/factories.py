"""Test data shared by several test files (pytest puts tests/ on sys.path)."""

CAPTION = "A street scene. Two red cars are at the top left."


def preference_record(idx: int) -> dict:
    """An RLHF-V record whose rejected answer has one wrong color ("blue" for "red"). Odd records
    have a second sentence: answers of different lengths, as real feedback has (Ray Data stores
    them as variable-shaped tensors, a case of its own)."""
    from rlhfv_ray.data.records import make_record
    from rlhfv_ray.scene_world.render import image_to_png_bytes, render_scene
    from rlhfv_ray.scene_world.scene import sample_scene

    png = image_to_png_bytes(render_scene(sample_scene(idx)))
    chosen = CAPTION + (" One green kite is at the middle right." if idx % 2 else "")
    return make_record(idx, png, "Describe the image in detail.", chosen, chosen.replace("red", "blue"),
                       ds_name="t", origin_dataset="t", origin_split={"model": "m"}, image_path=f"{idx}.png")


DDPO_STEPS = 8  # of the session's uninterrupted run (conftest `ddpo_two_workers`)


def ddpo_config(model, shards, out_root, name: str, steps: int = 4, **extra):
    """A small DDPO run on 2 Ray Train workers, checkpointed every 2 steps, its micro batches grouped
    by length (a resumed worker skips into the grouped order)."""
    from rlhfv_ray.training.train_ddpo import DDPOConfig

    return DDPOConfig.model_validate({
        "model": str(model), "shards": str(shards), "out": str(out_root / name), "run_name": name,
        "scaling": {"num_workers": 2, "cpus_per_worker": 1, "max_failures": 2},
        "optim": {"lr": 1e-3, "warmup_steps": 0, "max_steps": steps, "global_batch_size": 4, "micro_batch_size": 2},
        "checkpoint": {"storage_path": str(out_root / "ray_results"), "every_steps": 2},
        "log_every": 1, "group_by_length": {"window": 2}, **extra,
    })


def metrics(out) -> list[dict]:
    import json

    path = out / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
