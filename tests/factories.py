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
