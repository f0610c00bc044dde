"""The evaluator on hand-written responses, with the expected figures derived by hand."""

import pytest

from rlhfv_ray.eval.stats import wilson_interval
from rlhfv_ray.scene_world.metrics import VQAResult, overgeneralization_delta, score_caption, summarize
from rlhfv_ray.scene_world.scene import ObjectGroup, Scene


def test_perfect_caption_scores_zero(street_scene, street_caption):
    score = score_caption(street_scene, street_caption)
    assert not score.hallucinated and score.types == frozenset()
    assert (score.mentions, score.hallucinated_mentions, score.recalled, score.groups) == (3, 0, 3, 3)


@pytest.mark.parametrize("old, new, kind", [
    ("Two red cars", "Two green cars", "attribute"),
    ("Two red cars are", "Three red cars are", "number"),
    ("at the top left", "at the top right", "position"),
])
def test_one_wrong_field_is_one_hallucination_of_its_type(street_scene, street_caption, old, new, kind):
    score = score_caption(street_scene, street_caption.replace(old, new))
    assert score.hallucinated and score.types == frozenset({kind})
    assert score.hallucinated_mentions == 0  # CHAIR_i counts absent objects only
    assert score.recalled == 3


def test_absent_object_is_an_object_hallucination_and_loses_recall(street_scene, street_caption):
    score = score_caption(street_scene, street_caption.replace("One blue kite", "One blue sign"))
    assert score.types == frozenset({"object"})
    assert (score.mentions, score.hallucinated_mentions, score.recalled) == (3, 1, 2)
    assert score.hallucinated_classes == frozenset({"sign"})


def test_unreadable_response_counts_as_hallucinated(street_scene):
    score = score_caption(street_scene, "I cannot say.")
    assert not score.readable and score.hallucinated and score.types == frozenset()


def test_summary_figures_by_hand(street_scene, street_caption):
    perfect = score_caption(street_scene, street_caption)
    wrong_color = score_caption(street_scene, street_caption.replace("Two red cars", "Two green cars"))
    absent = score_caption(street_scene, street_caption.replace("One blue kite", "One blue sign"))
    short = score_caption(street_scene, "A street scene. Two red cars are at the top left.")
    vqa = [VQAResult("color", "red", "Red."), VQAResult("count", "two", "three"),
           VQAResult("existence", "no", "no"), VQAResult("position", "top left", "top  left")]
    m = summarize([perfect, wrong_color, absent, short], vqa)
    assert m["n_responses"] == 4
    assert m["response_hallucination_rate"] == 2 / 4
    assert m["mention_hallucination_rate"] == 1 / (3 + 3 + 3 + 1)
    assert m["hallucination_by_type"] == {"object": 0.25, "attribute": 0.25, "number": 0.0, "position": 0.0}
    assert m["object_recall"] == (3 + 3 + 2 + 1) / 12
    assert m["vqa_accuracy"] == 3 / 4
    assert m["unparsed_responses"] == 0
    assert m["ci95"]["response_hallucination_rate"] == wilson_interval(2, 4)
    assert m["ci95"]["hallucination_by_type"]["number"] == wilson_interval(0, 4)
    assert m["ci95"]["vqa_accuracy"] == wilson_interval(3, 4)
    # 3 words of scene sentence + 8 per group sentence: 27 for the full captions, 11 for the short one
    assert m["mean_response_words"] == pytest.approx((27 * 3 + 11) / 4)


def test_overgeneralization_delta_by_hand():
    # Two street scenes and two kitchen scenes; "bus" is a frequent street class, "cup" a kitchen one.
    street = Scene(1, "street", (ObjectGroup("kite", "red", 1, 0, 0),))
    kitchen = Scene(2, "kitchen", (ObjectGroup("kite", "red", 1, 0, 0),))
    says_bus = "A street scene. One red bus is at the top left."
    says_kite_street = "A street scene. One red kite is at the top left."
    says_kite_kitchen = "A kitchen scene. One red kite is at the top left."
    scores = [score_caption(street, says_bus), score_caption(street, says_kite_street),
              score_caption(kitchen, says_kite_kitchen), score_caption(kitchen, says_kite_kitchen)]
    delta = overgeneralization_delta(scores)
    # street: frequent-class hallucination inside street scenes 1/2, over all responses 1/4
    assert delta["street"] == pytest.approx(0.5 - 0.25)
    assert delta["kitchen"] == pytest.approx(0.0)
