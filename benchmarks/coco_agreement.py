"""Does the generic COCO benchmark (CHAIR on COCO instances) agree with the scene benchmark's exact
scoring on the same responses? Re-scores the description responses of a scene-benchmark report
(`rlhfv evaluate --benchmark scene`) with CHAIR on the same scenes exported as COCO instances, and
writes both figures side by side.

    python benchmarks/coco_agreement.py --report runs/demo/eval/base.json
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

from rlhfv_ray.eval.benchmark import responses_path
from rlhfv_ray.eval.chair import chair_metrics, load_synonyms, restrict_synonyms, score_description
from rlhfv_ray.eval.coco import load_instances
from rlhfv_ray.scene_world.coco_export import INSTANCES, SYNONYMS, export_coco
from rlhfv_ray.scene_world.metrics import score_caption, summarize
from rlhfv_ray.scene_world.scene import sample_scene
from rlhfv_ray.scene_world.spec import WorldParams


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", required=True, help="a scene-benchmark JSON (responses beside it)")
    parser.add_argument("--out", default="benchmarks/results/coco_agreement.json")
    args = parser.parse_args()
    world = WorldParams()  # the demo's world
    records = [json.loads(line) for line in responses_path(args.report).read_text().splitlines() if line.strip()]
    responses = {r["id"]: r["response"] for r in records if "hallucinated" in r}
    scenes = [sample_scene(seed, world) for seed in sorted(responses)]
    with tempfile.TemporaryDirectory() as tmp:
        export_coco(scenes, world.image_size, tmp)
        index = load_instances(Path(tmp) / INSTANCES)
        table, _ = restrict_synonyms(load_synonyms(Path(tmp) / SYNONYMS), index.categories)
    generic = chair_metrics([{"response": responses[s.seed], **score_description(responses[s.seed],
                                                                                 index.present[s.seed], table)}
                             for s in scenes])
    exact = summarize([score_caption(s, responses[s.seed]) for s in scenes], [])
    keys = ("mention_hallucination_rate", "object_recall")
    result = {"benchmark": "coco_agreement", "report": args.report, "responses": len(scenes),
              "machine": {"processor": platform.processor() or platform.machine()},
              "coco_chair": {k: generic[k] for k in keys}, "scene": {k: exact[k] for k in keys},
              "object_response_rate": {"coco_chair": generic["response_hallucination_rate"],
                                       "scene_object_type": exact["hallucination_by_type"]["object"]},
              "equal": {k: generic[k] == exact[k] for k in keys}}
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
