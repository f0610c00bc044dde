"""Grammar, parser, judge, noise and oracle on hand-written responses."""

import random

import pytest

from rlhfv_ray.scene_world.grammar import Claim, clean_caption, render_claim, sample_vqa
from rlhfv_ray.scene_world.judge import judge_response
from rlhfv_ray.scene_world.noise import noisy_caption
from rlhfv_ray.scene_world.oracle import annotate
from rlhfv_ray.scene_world.parser import parse_response
from rlhfv_ray.scene_world.scene import sample_scene
from rlhfv_ray.scene_world.spec import NoiseRates, WorldParams


def test_clean_caption_and_parse_round_trip(street_scene, street_caption):
    assert clean_caption(street_scene) == street_caption
    parsed = parse_response(street_caption)
    assert parsed.readable and parsed.scene_type == "street"
    assert parsed.claims == [Claim("car", "red", 2, 0, 0), Claim("kite", "blue", 1, 1, 2), Claim("bus", "yellow", 3, 2, 1)]
    for sentence in parsed.sentences:  # spans point back into the text
        assert street_caption[sentence.start:sentence.end] == sentence.text


def test_render_claim_inverts_parse_over_many_scenes():
    for seed in range(300):
        caption = clean_caption(sample_scene(seed))
        parsed = parse_response(caption)
        assert parsed.readable
        assert " ".join([parsed.sentences[0].text, *(render_claim(c) for c in parsed.claims)]) == caption


@pytest.mark.parametrize("text, unparsed", [
    ("A street scene. Two red cars are at the top left. Something else entirely.", ["Something else entirely."]),
    ("A street scene. Two red cars are at the top", ["Two red cars are at the top"]),  # cut off
    ("A street scene. Seven red cars are at the top left.", ["Seven red cars are at the top left."]),
    ("A street scene. Two pink cars are at the top left.", ["Two pink cars are at the top left."]),
])
def test_unreadable_sentences_are_kept_as_unparsed(text, unparsed):
    parsed = parse_response(text)
    assert parsed.unparsed == unparsed and not parsed.readable


def test_empty_response_is_not_readable():
    assert not parse_response("").readable


@pytest.mark.parametrize("replace_from, replace_to, expected", [
    ("Two red cars", "Two green cars", ("attribute",)),
    ("Two red cars are", "Four red cars are", ("number",)),
    ("at the top left", "at the bottom left", ("position",)),
    ("Two red cars", "Two red boats", ("object",)),
    ("Two red cars are at the top left", "Three green cars are at the top right", ("attribute", "number", "position")),
])
def test_judge_types_one_sentence(street_scene, street_caption, replace_from, replace_to, expected):
    verdict = judge_response(street_scene, street_caption.replace(replace_from, replace_to))
    assert [v.errors for v in verdict.sentences] == [(), expected, (), ()]


def test_oracle_corrects_attribute_minimally(street_scene, street_caption):
    response = street_caption.replace("One blue kite", "One red kite")
    annotation = annotate(street_scene, response)
    assert annotation.chosen == street_caption and annotation.rejected == response
    assert [c.kinds for c in annotation.corrections] == [("attribute",)]
    assert annotation.corrections[0].original == "One red kite is at the middle right."


def test_oracle_number_fix_changes_agreement(street_scene, street_caption):
    response = street_caption.replace("Two red cars are", "One red car is")
    annotation = annotate(street_scene, response)
    assert annotation.chosen == street_caption
    assert annotation.corrections[0].corrected == "Two red cars are at the top left."


def test_oracle_replaces_a_misnamed_object_with_what_is_there(street_scene, street_caption):
    # "sign" is absent; the middle-right cell holds the kite, which no other sentence describes.
    response = street_caption.replace("One blue kite", "One blue sign")
    annotation = annotate(street_scene, response)
    assert annotation.chosen == street_caption
    assert [c.kinds for c in annotation.corrections] == [("object",)]


def test_oracle_deletes_an_object_in_an_empty_cell(street_scene, street_caption):
    response = street_caption + " One green sign is at the top right."
    annotation = annotate(street_scene, response)
    assert annotation.chosen == street_caption
    assert annotation.corrections[0].corrected == ""


def test_oracle_leaves_correct_and_unreadable_text_alone(street_scene, street_caption):
    assert not annotate(street_scene, street_caption).has_hallucination
    garbled = street_caption + " Blah blah."
    annotation = annotate(street_scene, garbled)
    assert annotation.chosen == garbled and annotation.unreadable_sentences == 1


def test_oracle_never_repeats_a_sentence_when_fixing_a_second_mention(street_scene, street_caption):
    # The cars are described right; a second car sentence is wrong in every field. Fixing its fields
    # would repeat the first sentence: the oracle describes what is in its cell (the kite, if no
    # other sentence does) or removes it.
    without_kite = street_caption.replace(" One blue kite is at the middle right.", "")
    second_car = " Four green cars are at the middle right."
    annotation = annotate(street_scene, without_kite + second_car)
    assert annotation.chosen == without_kite + " One blue kite is at the middle right."
    annotation = annotate(street_scene, street_caption + second_car)  # the kite is described already
    assert annotation.chosen == street_caption
    assert [c.corrected for c in annotation.corrections] == [""]


def test_oracle_fixes_fields_in_place_before_replacing_an_absent_object(street_scene, street_caption):
    # "sign" (absent) sits in the kite's cell and comes first; the kite sentence has a wrong color.
    # The kite sentence is fixed in place, so the sign sentence is removed, not turned into a kite.
    response = ("A street scene. One green sign is at the middle right. Two red cars are at the top left. "
                "One red kite is at the middle right. Three yellow buses are at the bottom center.")
    annotation = annotate(street_scene, response)
    assert annotation.chosen == ("A street scene. Two red cars are at the top left. One blue kite is at the "
                                 "middle right. Three yellow buses are at the bottom center.")


def test_oracle_output_is_always_judged_clean():
    params = WorldParams(noise=NoiseRates(1.0, 1.0, 1.0, 1.0))
    for seed in range(400):
        scene = sample_scene(seed, params)
        caption = noisy_caption(scene, params.noise, random.Random(seed))
        chosen = annotate(scene, caption.text).chosen
        assert judge_response(scene, chosen).error_types == set()
        sentences = [s.text for s in judge_response(scene, chosen).parsed.sentences]
        assert len(sentences) == len(set(sentences)), chosen


def test_noise_off_gives_clean_captions_and_full_noise_fires_every_trigger():
    off = WorldParams(noise=NoiseRates(0.0, 0.0, 0.0, 0.0))
    on = WorldParams(noise=NoiseRates(1.0, 1.0, 1.0, 1.0))
    fired = set()
    for seed in range(300):
        scene = sample_scene(seed, off)
        assert noisy_caption(scene, off.noise, random.Random(0)).text == clean_caption(scene)
        caption = noisy_caption(scene, on.noise, random.Random(0))
        fired.update(caption.noise_types)
        assert set(caption.noise_types) == judge_response(scene, caption.text).error_types
    assert fired == {"object", "attribute", "number", "position"}


def test_vqa_answers_are_true(street_scene):
    items = sample_vqa(street_scene, random.Random(0), 40)
    assert len({i.question for i in items}) == len(items)
    for item in items:
        if item.kind == "existence":
            cls = item.question.split()[3]
            assert item.answer == ("yes" if street_scene.group_of(cls) else "no")
        if item.kind == "color" and "kite" in item.question:
            assert item.answer == "blue"
