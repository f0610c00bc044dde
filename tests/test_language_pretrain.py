"""The pure parts of language pretraining: the cells' words, the existence questions, the fade."""

import random
import re
from collections import Counter

import torch

from rlhfv_ray.scene_world.language_pretrain import (bag_of_words, cell_words, class_words, existence_conversations,
                                               fade_weight, other_words)
from rlhfv_ray.scene_world.scene import ObjectGroup, Scene, sample_scene


def test_fade_holds_at_zero_then_rises_linearly_to_one():
    assert [fade_weight(s, hold=200, ramp=200) for s in (1, 200, 201, 300, 400, 401, 1000)] == \
        [0.0, 0.0, 0.005, 0.5, 1.0, 1.0, 1.0]
    assert fade_weight(1, hold=0, ramp=0) == 1.0  # no hold, no ramp: full cells from the first step


def test_class_and_other_words_partition_each_cell():
    scene = Scene(0, "street", (ObjectGroup("car", "red", 2, 0, 1),))  # top center
    assert class_words(scene)[1] == ["car"] and class_words(scene)[0] == []
    assert other_words(scene)[1] == ["street", "top", "center", "red", "two"]
    assert other_words(scene)[8] == ["street", "bottom", "right"]
    for i in range(20):
        s = sample_scene(i)
        for full, cls, rest in zip(cell_words(s), class_words(s), other_words(s)):
            assert Counter(full) == Counter(cls + rest)


def test_bag_of_words_sums_the_words_and_skips_padding():
    embedding = torch.nn.Embedding(4, 2)
    with torch.no_grad():
        embedding.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0], [5.0, 5.0]]))
    ids = torch.tensor([[[0, 2, -1], [-1, -1, -1]]])  # cell 0: words 0 and 2; cell 1: empty
    assert bag_of_words(embedding, ids).tolist() == [[[3.0, 2.0], [0.0, 0.0]]]


def test_existence_questions_are_answered_from_the_scene_and_balanced():
    scenes = [sample_scene(i) for i in range(400)]
    conversations = existence_conversations(scenes, random.Random(0))
    answers = []
    for scene, [(question, answer)] in zip(scenes, conversations):
        cls = re.fullmatch(r"Is there a (\w+) in the image\?", question).group(1)
        assert answer == ("yes" if cls in scene.classes else "no")
        answers.append(answer)
    assert 0.4 < answers.count("yes") / len(answers) < 0.6
    assert existence_conversations(scenes, random.Random(0)) == conversations  # seeded
