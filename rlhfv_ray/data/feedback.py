"""`rlhfv collect-feedback`: the base model describes fresh scenes, the oracle annotator corrects the
hallucinated segments, and the pairs are written in the public RLHF-V parquet format.

Generation is a Ray Data batch-inference stage on an actor pool (each actor loads the model once).
Scenes come from the "feedback" seed split, disjoint from SFT and from the benchmark. As in the
public dataset, only answers that contained a hallucination become pairs.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from statistics import mean

import pandas as pd
from pydantic import Field

from rlhfv_ray.config import StrictModel, save_resolved_config
from rlhfv_ray.data.records import RLHFV_COLUMNS, make_record
from rlhfv_ray.model.generate import GenerationSettings, generate
from rlhfv_ray.model.io import load_model_and_processor
from rlhfv_ray.training.config import RayConfig
from rlhfv_ray.world.grammar import DESCRIPTION_PROMPTS
from rlhfv_ray.world.oracle import annotate
from rlhfv_ray.world.render import image_to_png_bytes, render_scene
from rlhfv_ray.world.scene import sample_scene
from rlhfv_ray.world.spec import HALLUCINATION_TYPES, WorldParams, split_seed

FEEDBACK_FILE = "feedback.parquet"
DS_NAME = "scene-world"


class FeedbackSection(StrictModel):
    scenes: int = Field(3300, gt=0)  # about 1.4k pairs (the paper's size) at the SFT base's hallucination rate
    first_index: int = Field(0, ge=0)  # scenes [first_index, first_index + scenes) of the feedback split
    batch_size: int = Field(64, gt=0)
    actors: int = Field(1, ge=1)
    max_new_tokens: int = Field(96, gt=0)


class FeedbackConfig(FeedbackSection):
    model: str
    out: str  # directory: feedback.parquet, stats.json, resolved config
    world: WorldParams = WorldParams()
    ray: RayConfig = RayConfig()


class GenerateAndAnnotate:
    """Actor: render the batch's scenes, describe them with the model, annotate with the oracle."""

    def __init__(self, model_path: str, world: WorldParams, max_new_tokens: int):
        self.model, self.processor = load_model_and_processor(model_path)
        self.model.eval()
        self.world = world
        self.settings = GenerationSettings(max_new_tokens=max_new_tokens)
        self.model_name = Path(model_path).name

    def __call__(self, batch: dict) -> pd.DataFrame:
        indices = [int(i) for i in batch["id"]]
        scenes = [sample_scene(split_seed("feedback", i), self.world) for i in indices]
        images = [render_scene(s, self.world.image_size) for s in scenes]
        prompts = [DESCRIPTION_PROMPTS[i % len(DESCRIPTION_PROMPTS)] for i in indices]
        rows = []
        for scene, image, prompt, gen in zip(scenes, images, prompts,
                                             generate(self.model, self.processor, images, prompts, self.settings)):
            annotation = annotate(scene, gen.text)
            kinds = [k for c in annotation.corrections for k in c.kinds]
            record = make_record(
                scene.seed, image_to_png_bytes(image), prompt, annotation.chosen, annotation.rejected,
                ds_name=DS_NAME, origin_dataset=DS_NAME,
                origin_split={"model": self.model_name, "type": "detailed_description"},
                image_path=f"scene_{scene.seed}.png")
            rows.append({**record, "hallucinated": annotation.has_hallucination,
                         "n_corrections": len(annotation.corrections), "kinds": json.dumps(kinds),
                         "unreadable_sentences": annotation.unreadable_sentences,
                         "chosen_words": len(annotation.chosen.split())})
        return pd.DataFrame(rows)


def feedback_stats(frame: pd.DataFrame) -> dict:
    """The statistics the paper reports for its data (§3.1), over the kept pairs."""
    kept = frame[frame["hallucinated"]]
    kinds = Counter(k for row in kept["kinds"] for k in json.loads(row))
    total = sum(kinds.values())
    return {
        "responses": len(frame),
        "pairs": len(kept),
        "pair_share": len(kept) / len(frame) if len(frame) else 0.0,
        "words_per_answer": mean(kept["chosen_words"]) if len(kept) else 0.0,
        "corrected_segments_per_answer": mean(kept["n_corrections"]) if len(kept) else 0.0,
        "type_share": {t: kinds.get(t, 0) / total if total else 0.0 for t in (*HALLUCINATION_TYPES, "scene")},
        "responses_with_unreadable_sentences": int((frame["unreadable_sentences"] > 0).sum()),
        "paper": {"words_per_answer": 64.4, "corrected_segments_per_answer": 2.65,
                  "type_share": {"object": 0.412, "position": 0.203, "number": 0.165, "attribute": 0.100}},
    }


def write_rlhfv_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Plain parquet as the public dataset has it: without pandas metadata, which would record the
    image struct as a pyarrow-backed pandas dtype that other readers (and pandas itself) reject."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    pq.write_table(table.replace_schema_metadata(None), path)


def collect_feedback(config: FeedbackConfig) -> dict:
    import ray.data

    from rlhfv_ray.training.trainer import init_ray

    init_ray(config.ray)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    save_resolved_config(config, out)
    ids = ray.data.range(config.scenes).map(lambda r: {"id": r["id"] + config.first_index})
    annotated = ids.map_batches(
        GenerateAndAnnotate,
        fn_constructor_kwargs={"model_path": config.model, "world": config.world,
                               "max_new_tokens": config.max_new_tokens},
        batch_size=config.batch_size, compute=ray.data.ActorPoolStrategy(size=config.actors), batch_format="numpy")
    frame = annotated.to_pandas()
    stats = feedback_stats(frame)
    write_rlhfv_parquet(frame[frame["hallucinated"]][list(RLHFV_COLUMNS)], out / FEEDBACK_FILE)
    (out / "stats.json").write_text(json.dumps(stats, indent=2))
    print(f"collect-feedback: {stats['pairs']} pairs from {stats['responses']} responses; "
          f"{stats['words_per_answer']:.1f} words and {stats['corrected_segments_per_answer']:.2f} corrected "
          f"segments per answer (paper: 64.4, 2.65); types {stats['type_share']}")
    return stats
