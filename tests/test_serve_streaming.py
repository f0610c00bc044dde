"""Batched streaming generation (rlhfv_ray.model.streaming): per-request settings inside one batch,
text deltas per step, and the same results as `generate.generate` where the settings agree."""

import threading

import pytest
import torch

from rlhfv_ray.model.encoding import user_prompt
from rlhfv_ray.model.generate import GenerationSettings, generate
from rlhfv_ray.model.io import load_model, load_processor
from rlhfv_ray.model.streaming import _RowDecoder, _RowSampling, batch_inputs, stream_generate
from rlhfv_ray.scene_world.render import render_scene
from rlhfv_ray.scene_world.scene import sample_scene

QUESTIONS = ["Describe the image in detail.", "What color is the car?", "How many buses are there?",
             "Give a detailed description of this scene."]


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    return load_model(tiny_model_dir).eval(), load_processor(tiny_model_dir)


@pytest.fixture(scope="module")
def images():
    return [render_scene(sample_scene(seed)) for seed in range(len(QUESTIONS))]


def _run(model, processor, images, questions, settings):
    """(finals, concatenated deltas, items per row) of one streamed batch."""
    inputs = batch_inputs(processor, [[image] for image in images], [user_prompt(processor, q) for q in questions])
    steps = list(stream_generate(model, processor, inputs, settings))
    assert all(len(step) == len(questions) for step in steps)
    finals, texts, counts = [], [], []
    for row in range(len(questions)):
        items = [step[row] for step in steps if step[row] is not None]
        # a row's items are contiguous from the first step, and only its last carries the result
        assert all(step[row] is not None for step in steps[:len(items)])
        assert [item.generation is not None for item in items] == [False] * (len(items) - 1) + [True]
        finals.append(items[-1].generation)
        texts.append("".join(item.text for item in items))
        counts.append(len(items))
    return finals, texts, counts


def test_greedy_stream_equals_generate(loaded, images):
    model, processor = loaded
    settings = GenerationSettings(max_new_tokens=12)
    expected = generate(model, processor, images, QUESTIONS, settings)
    finals, texts, counts = _run(model, processor, images, QUESTIONS, [settings] * len(QUESTIONS))
    assert finals == expected
    assert texts == [g.text for g in expected]
    assert all(c == g.completion_tokens or g.finished for c, g in zip(counts, expected))


def test_each_row_stops_at_its_own_max_new_tokens(loaded, images):
    model, processor = loaded
    limits = [3, 9, 1, 6]
    finals, _, counts = _run(model, processor, images, QUESTIONS, [GenerationSettings(n) for n in limits])
    for limit, final, count in zip(limits, finals, counts):
        assert final.completion_tokens <= limit
        assert final.finished or (final.completion_tokens <= count == limit)
    # each row equals that row of the whole batch generated greedily with its limit
    for row, limit in enumerate(limits):
        assert finals[row] == generate(model, processor, images, QUESTIONS, GenerationSettings(limit))[row]


def test_greedy_rows_stay_greedy_in_a_sampled_batch(loaded, images):
    model, processor = loaded
    greedy = GenerationSettings(max_new_tokens=8)
    sampled = GenerationSettings(max_new_tokens=8, temperature=1.0, top_p=0.9)
    all_greedy, _, _ = _run(model, processor, images, QUESTIONS, [greedy] * 4)
    torch.manual_seed(0)
    mixed, _, _ = _run(model, processor, images, QUESTIONS, [greedy, sampled, greedy, sampled])
    assert mixed[0] == all_greedy[0] and mixed[2] == all_greedy[2]


def test_row_sampling_applies_temperature_and_top_p_per_row():
    # probabilities 0.5, 0.3, 0.2 (log-probs as logits)
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]] * 3))
    out = _RowSampling(temperatures=[0.0, 1.0, 1.0], top_ps=[1.0, 0.6, 1.0])(None, logits.clone())
    inf = float("-inf")
    assert out[0].tolist() == [0.0, inf, inf]  # greedy: only the argmax survives
    # top_p 0.6: 0.5 alone is below 0.6, 0.5+0.3 reaches it; the 0.2 token goes
    assert torch.isfinite(out[1]).tolist() == [True, True, False]
    assert torch.allclose(out[2], logits[2])  # temperature 1, top_p 1: untouched
    half = _RowSampling(temperatures=[0.5], top_ps=[1.0])(None, logits[:1].clone())
    assert torch.allclose(half, logits[:1] / 0.5)


def test_row_decoder_emits_deltas_that_add_up_to_the_text(loaded):
    _, processor = loaded
    tokenizer = processor.tokenizer
    text = "A street scene. Two red cars are at the top left. Un café."  # "é": two byte-level tokens
    ids = tokenizer(" " + text, add_special_tokens=False)["input_ids"]
    decoder = _RowDecoder(tokenizer, max_new_tokens=100, prompt_tokens=7, stop_ids=[tokenizer.eos_token_id])
    steps = [decoder.step(i) for i in ids + [tokenizer.eos_token_id]]
    assert decoder.step(tokenizer.pad_token_id) is None  # after its end a row yields nothing
    assert "".join(s.text for s in steps) == text
    assert sum(1 for s in steps if s.text) > 5  # it streamed, not one lump at the end
    assert not any(s.text.endswith("\ufffd") for s in steps)
    final = steps[-1].generation
    assert (final.text, final.prompt_tokens, final.completion_tokens, final.finished) == (text, 7, len(ids) + 1, True)


def test_closing_the_stream_stops_the_generation_thread(loaded, images):
    model, processor = loaded
    inputs = batch_inputs(processor, [[images[0]]], [user_prompt(processor, QUESTIONS[0])])
    steps = stream_generate(model, processor, inputs, [GenerationSettings(max_new_tokens=200)])
    next(steps)
    steps.close()
    assert not any(t.name == "stream-generate" and t.is_alive() for t in threading.enumerate())
