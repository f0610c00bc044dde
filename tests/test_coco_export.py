"""The scene world exported as COCO instances: the generic CHAIR scoring on the export agrees with the
scene benchmark's exact scoring on the same responses (mention-level object hallucination, recall)."""

import json
import random

from rlhfv_ray.eval.chair import load_synonyms, restrict_synonyms, score_description
from rlhfv_ray.eval.coco import load_instances
from rlhfv_ray.scene_world.coco_export import INSTANCES, SYNONYMS, export_coco
from rlhfv_ray.scene_world.metrics import score_caption, summarize
from rlhfv_ray.scene_world.noise import noisy_caption
from rlhfv_ray.scene_world.scene import sample_scene
from rlhfv_ray.scene_world.spec import NoiseRates, WorldParams, split_seed


def test_chair_on_the_export_agrees_with_the_scene_benchmark(tmp_path):
    world = WorldParams()
    scenes = [sample_scene(split_seed("benchmark", i), world) for i in range(150)]
    # responses that hallucinate every way the world's noisy corpus does, heavily
    rates = NoiseRates(object=1.0, attribute=1.0, number=1.0, position=1.0)
    responses = {s.seed: noisy_caption(s, rates, random.Random(s.seed)).text for s in scenes}
    export_coco(scenes, world.image_size, tmp_path)

    index = load_instances(tmp_path / INSTANCES)
    table, unknown = restrict_synonyms(load_synonyms(tmp_path / SYNONYMS), index.categories)
    assert not unknown and sorted(index.present) == sorted(s.seed for s in scenes)
    generic = [score_description(responses[seed], index.present[seed], table) for seed in sorted(index.present)]
    exact = summarize([score_caption(s, responses[s.seed]) for s in scenes], [])

    hallucinated = sum(len(r["hallucinated_objects"]) for r in generic)
    mentions = sum(len(r["mentions"]) for r in generic)
    assert hallucinated > 20  # the comparison is not vacuous
    assert hallucinated / mentions == exact["mention_hallucination_rate"]
    recall = sum(r["recalled"] for r in generic) / sum(r["objects"] for r in generic)
    assert recall == exact["object_recall"]
    images = json.loads((tmp_path / INSTANCES).read_text())["images"]
    assert all((tmp_path / "images" / i["file_name"]).read_bytes()[:4] == b"\x89PNG" for i in images)
