"""The COCO-format hallucination benchmark (rlhfv_ray.eval.coco / chair / pope): CHAIR matching and
metrics, POPE sampling, answer parsing and metrics, each against hand-derived values; config and
input errors; one run of the whole benchmark on the tiny model."""

from __future__ import annotations

import json
from statistics import mean

import pytest
from PIL import Image
from pydantic import ValidationError

from rlhfv_ray.eval.chair import (NO_OBJECT, SynonymsError, chair_metrics, load_synonyms, mentioned_categories,
                                  parse_synonyms, restrict_synonyms, score_description)
from rlhfv_ray.eval.coco import CocoBenchmark
from rlhfv_ray.eval.pope import index_instances, parse_yes_no, pope_metrics, pope_questions
from rlhfv_ray.eval.stats import wilson_interval
from rlhfv_ray.images import ImageDecodeError

COCO_80 = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
]

SMALL_FILE = """# a comment
dog, puppy   # trailing comment
person, people, man, men
hot dog, hotdog
knife, knives
! bus stop
bus
"""


@pytest.fixture(scope="module")
def coco_table():
    return load_synonyms()


# --- synonyms and CHAIR ---------------------------------------------------------------------------

def test_parse_synonyms_plurals_phrases_and_exclusions():
    table = parse_synonyms(SMALL_FILE.splitlines())
    assert table["puppies"] == table["dogs"] == table["puppy"] == "dog"
    assert table["hot dogs"] == table["hotdog"] == "hot dog"
    assert table["knives"] == "knife" and table["buses"] == "bus" and table["men"] == "person"
    assert table["bus stop"] == table["bus stops"] == NO_OBJECT
    text = "Two hot dogs, a puppy and three men at the bus stop; buses pass. Knives!"
    assert mentioned_categories(text, table) == ["hot dog", "dog", "person", "bus", "knife"]


def test_default_file_covers_the_80_coco_categories(coco_table):
    assert {c for c in coco_table.values() if c != NO_OBJECT} == set(COCO_80)


@pytest.mark.parametrize("text, expected", [
    ("A teddy-bear and a bear.", ["teddy bear", "bear"]),
    ("People, mice, skis and knives.", ["person", "mouse", "skis", "knife"]),
    ("Buses wait at the traffic lights by a hot dog stand.", ["bus", "traffic light", "hot dog"]),
    ("She wears an oven mitt at the bus stop.", []),
    ("A man's dog. Two women and their children.", ["person", "dog", "person", "person"]),
])
def test_default_file_matching(coco_table, text, expected):
    assert mentioned_categories(text, coco_table) == expected


def test_synonyms_errors_name_the_line(tmp_path):
    with pytest.raises(SynonymsError, match=r":2: malformed line"):
        parse_synonyms(["dog, puppy", "cat, , kitten"])
    with pytest.raises(SynonymsError, match=r":2: 'puppy' is given to 'cat' here but to 'dog' at <synonyms>:1"):
        parse_synonyms(["dog, puppy", "cat, puppy"])
    with pytest.raises(SynonymsError, match="already has a line"):
        parse_synonyms(["dog", "dog, puppy"])
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        load_synonyms(tmp_path / "nope.txt")


def test_restrict_synonyms_drops_unknown_and_adds_own_names():
    table, unknown = restrict_synonyms(parse_synonyms(["dog, puppy", "cat, kitten", "! bus stop"]), ["dog", "zebra"])
    assert unknown == ["cat"]
    assert table == {"dog": "dog", "dogs": "dog", "puppy": "dog", "puppies": "dog", "zebra": "zebra",
                     "zebras": "zebra", "bus stop": NO_OBJECT, "bus stops": NO_OBJECT}


def test_chair_metrics_on_three_captions(coco_table):
    captions = [  # (response, present categories)
        ("A man walks his dog past two cats. The dog and the man are happy.", {"dog", "person"}),
        ("A pizza on a table next to a knife and a fork.", {"pizza", "dining table", "cup"}),
        ("A red car parked on the street.", {"car"}),
    ]
    records = [{"response": text, **score_description(text, present, coco_table)} for text, present in captions]
    assert records[0]["mentions"] == ["person", "dog", "cat", "dog", "person"]
    assert records[0]["hallucinated_objects"] == ["cat"] and records[0]["types"] == ["object"]
    assert records[1]["hallucinated_objects"] == ["knife", "fork"] and records[1]["recalled"] == 2
    assert records[2]["hallucinated"] is False and records[2]["types"] == []
    metrics = chair_metrics(records)
    assert metrics["n_responses"] == 3 and metrics["n_mentions"] == 10
    assert metrics["response_hallucination_rate"] == pytest.approx(2 / 3)
    assert metrics["mention_hallucination_rate"] == pytest.approx(3 / 10)
    assert metrics["object_recall"] == pytest.approx(5 / 6)
    assert metrics["mean_response_words"] == pytest.approx((15 + 12 + 7) / 3)
    assert metrics["hallucination_by_type"] == {"object": pytest.approx(2 / 3)}
    assert metrics["ci95"]["response_hallucination_rate"] == pytest.approx(list(wilson_interval(2, 3)))


def test_chair_metrics_of_nothing():
    metrics = chair_metrics([])
    assert metrics["n_responses"] == 0 and metrics["response_hallucination_rate"] == 0.0
    assert metrics["ci95"]["response_hallucination_rate"] == [0.0, 1.0]


# --- POPE -----------------------------------------------------------------------------------------

def _instances(present: dict[int, list[str]], empty_images=(6,)) -> dict:
    names = ["person", "dog", "cat", "car", "bus", "kite"]
    ids = {name: i + 1 for i, name in enumerate(names)}
    image_ids = sorted([*present, *empty_images])
    return {"images": [{"id": i, "file_name": f"{i}.png"} for i in image_ids],
            "annotations": [{"image_id": i, "category_id": ids[c], "bbox": [0, 0, 1, 1]}
                            for i, cs in present.items() for c in cs],
            "categories": [{"id": ids[n], "name": n} for n in names]}


# images per category: person 3, car 2, dog 2, kite 2, bus 1, cat 1
INSTANCES = _instances({1: ["dog", "kite"], 2: ["person", "car"], 3: ["person", "car"], 4: ["person", "bus"],
                        5: ["dog", "cat", "kite"]})


def _by(questions, image_id, setting, expected):
    return [q["category"] for q in questions
            if q["image_id"] == image_id and q["setting"] == setting and q["expected"] == expected]


def test_pope_popular_and_adversarial_negatives():
    questions = pope_questions(INSTANCES, seed=0, per_image=2)
    # image 1 {dog, kite}: the most frequent absent ones are person (3), car (2); cat co-occurs with
    # both dog and kite (image 5), the rest with neither, so person (most frequent) comes second
    assert _by(questions, 1, "popular", "no") == ["person", "car"]
    assert _by(questions, 1, "adversarial", "no") == ["cat", "person"]
    # image 4 {person, bus}: car (2), dog (2), kite (2) tie on frequency: by name
    assert _by(questions, 4, "popular", "no") == ["car", "dog"]
    assert _by(questions, 4, "adversarial", "no") == ["car", "dog"]  # car is with person twice
    assert _by(questions, 5, "adversarial", "no") == ["person", "car"]  # nothing co-occurs: frequency


def test_pope_positives_random_negatives_and_determinism():
    questions = pope_questions(INSTANCES, seed=0, per_image=2)
    assert len(questions) == 5 * 3 * 4  # image 6 has no annotation; 2 yes + 2 no per image and setting
    for image_id, present in ((1, {"dog", "kite"}), (5, {"dog", "cat", "kite"})):
        positives = [_by(questions, image_id, s, "yes") for s in ("random", "popular", "adversarial")]
        assert positives[0] == positives[1] == positives[2] and len(set(positives[0])) == 2
        assert set(positives[0]) <= present
        negatives = _by(questions, image_id, "random", "no")
        assert len(set(negatives)) == 2 and not set(negatives) & present
    assert pope_questions(INSTANCES, seed=0, per_image=2) == questions
    # independent streams: asking about image 5 alone draws the same questions for it
    alone = pope_questions(INSTANCES, seed=0, per_image=2, image_ids=[5])
    assert alone == [q for q in questions if q["image_id"] == 5]


def test_pope_counts_are_capped_by_present_and_absent():
    questions = pope_questions(INSTANCES, seed=3, per_image=5, settings=["random"])
    assert len(_by(questions, 5, "random", "yes")) == 3  # 3 present, 3 absent
    assert len(_by(questions, 1, "random", "no")) == 2  # 2 present
    assert pope_questions(INSTANCES, seed=0, per_image=0) == []


def test_index_instances_errors_and_counts():
    index = index_instances(INSTANCES)
    assert index.annotated_ids == [1, 2, 3, 4, 5] and index.images_without_objects == 1
    bad = json.loads(json.dumps(INSTANCES))
    bad["annotations"].append({"image_id": 1, "category_id": 99})
    with pytest.raises(ValueError, match="category_id 99"):
        index_instances(bad)
    bad["annotations"][-1] = {"image_id": 42, "category_id": 1}
    with pytest.raises(ValueError, match="image_id 42"):
        index_instances(bad)
    with pytest.raises(ValueError, match="'categories'"):
        index_instances({"images": [], "annotations": []})


@pytest.mark.parametrize("text, expected", [
    ("Yes, there is a dog.", True), ("No.", False), ("NO", False), ("There is no dog in the image.", False),
    ("There isn’t a dog.", False), ("I think yes", True), ("There is a dog.", None), ("", None),
    ("Yes. But not really.", True), ("Yes, and not only one.", True),
])
def test_parse_yes_no(text, expected):
    assert parse_yes_no(text) is expected


def test_pope_metrics_by_setting():
    rows = [("yes", "yes"), ("yes", "no"), ("no", "yes"), ("no", "no"), ("yes", None), ("no", "no")]
    records = [{"setting": "random", "expected": e, "predicted": p} for e, p in rows]
    records += [{"setting": "popular", "expected": "yes", "predicted": "yes"},
                {"setting": "popular", "expected": "no", "predicted": "no"}]
    metrics = pope_metrics(records, ["random", "popular", "adversarial"])
    assert list(metrics) == ["random", "popular", "adversarial"]
    random_ = metrics["random"]  # tp 1, fp 1, tn 2, fn 2 (one unparsed)
    assert random_["n"] == 6 and random_["unparsed"] == 1
    assert random_["accuracy"] == pytest.approx(0.5) and random_["precision"] == pytest.approx(0.5)
    assert random_["recall"] == pytest.approx(1 / 3) and random_["f1"] == pytest.approx(0.4)
    assert random_["yes_ratio"] == pytest.approx(1 / 3)
    assert random_["ci95"]["accuracy"] == pytest.approx(list(wilson_interval(3, 6)))
    assert metrics["popular"]["accuracy"] == metrics["popular"]["f1"] == 1.0
    assert metrics["popular"]["yes_ratio"] == 0.5
    assert metrics["adversarial"]["n"] == 0


# --- the benchmark config and its input errors ----------------------------------------------------

def _write_inputs(tmp_path, image_ids=(1, 2, 3, 4, 5)) -> dict:
    (tmp_path / "annotations.json").write_text(json.dumps(INSTANCES))
    (tmp_path / "images").mkdir(exist_ok=True)
    colors = ["red", "green", "blue", "yellow", "white"]
    for i in image_ids:
        Image.new("RGB", (64, 64), colors[i % len(colors)]).save(tmp_path / "images" / f"{i}.png")
    return {"annotations": str(tmp_path / "annotations.json"), "images": str(tmp_path / "images")}


@pytest.mark.parametrize("extra, message", [
    ({"bogus": 1}, "bogus"), ({"pope_template": "Is it there?"}, "pope_template"),
    ({"pope_settings": ["random", "random"]}, "pope_settings"), ({"pope_settings": ["hard"]}, "pope_settings"),
    ({"max_images": 0}, "max_images"),
])
def test_config_rejects_bad_settings(extra, message):
    with pytest.raises(ValidationError, match=message):
        CocoBenchmark.model_validate({"annotations": "a.json", "images": "imgs", **extra})


def test_missing_inputs_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.json"):
        CocoBenchmark(annotations=str(tmp_path / "missing.json"), images=str(tmp_path)).run(None, None)
    paths = _write_inputs(tmp_path, image_ids=(1, 2, 4, 5))
    with pytest.raises(FileNotFoundError, match=r"3\.png"):
        CocoBenchmark(**paths).run(None, None)


def test_undecodable_image_is_named(tmp_path):
    paths = _write_inputs(tmp_path)
    (tmp_path / "images" / "2.png").write_bytes(b"not a png")
    with pytest.raises(ImageDecodeError, match=r"2\.png"):
        CocoBenchmark(**paths).run(None, None)


def test_unknown_synonym_categories_warn(tmp_path):
    paths = _write_inputs(tmp_path, image_ids=())
    (tmp_path / "syn.txt").write_text("dog, puppy\nunicorn, unicorns\n")
    with pytest.warns(UserWarning, match="unicorn"), pytest.raises(FileNotFoundError):
        CocoBenchmark(**paths, synonyms=str(tmp_path / "syn.txt")).run(None, None)


# --- the whole benchmark on the tiny model --------------------------------------------------------

@pytest.mark.slow
def test_run_on_tiny_model(tiny_model_dir, tmp_path):
    from rlhfv_ray.model.io import load_model, load_processor

    paths = _write_inputs(tmp_path)
    # the first 3 annotated images; image 6 has no annotation and no file: skipped, not an error.
    # batch_size 2 decodes the images in two chunks.
    benchmark = CocoBenchmark(**paths, max_images=3, pope_objects=2, batch_size=2, max_new_tokens=4)
    metrics, records = benchmark.run(load_model(tiny_model_dir).eval(), load_processor(tiny_model_dir))

    descriptions = [r for r in records if r["task"] == "description"]
    pope = [r for r in records if r["task"] == "pope"]
    assert [r["id"] for r in descriptions] == [1, 2, 3]
    assert metrics["n_responses"] == metrics["n_images"] == 3 and metrics["images_without_objects"] == 1
    assert len(records) == 3 + 3 * 3 * 4 and len({r["id"] for r in pope}) == len(pope)
    for setting in ("random", "popular", "adversarial"):
        assert metrics["pope"][setting]["n"] == 2 * 2 * 3
    assert metrics["pope_accuracy"] == pytest.approx(mean(m["accuracy"] for m in metrics["pope"].values()))
    assert all(r["correct"] == (r["predicted"] == r["expected"]) for r in pope)
    assert all(r["predicted"] in ("yes", "no", None) for r in pope)
    assert {"hallucinated", "types", "mentions", "hallucinated_objects", "recalled", "objects",
            "prompt", "response", "finished"} <= set(descriptions[0])
    assert 0.0 <= metrics["response_hallucination_rate"] <= 1.0
    json.dumps([metrics, records])  # the report and the responses file are JSON
