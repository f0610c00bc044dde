"""Every image-text-to-text family through the model side of every stage, on tiny random
checkpoints built from each family's config (`vlm_families.py`): prompts and answers from the
chat template, teacher forcing equal to what generation computes, the shared-prompt forward where
it is used, SFT batches, LoRA targets, and the serving engine's batched greedy generation."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText

from rlhfv_ray.model.encoding import (TemplateError, encode_answers, encode_conversations, encode_prompts,
                                      prompt_inputs, stop_token_ids)
from rlhfv_ray.model.families import uses_shared_prompt, vision_module
from rlhfv_ray.model.inputs import lm_batch
from rlhfv_ray.model.io import load_model, load_processor
from rlhfv_ray.model.logprobs import forward_token_logps
from rlhfv_ray.model.pair_forward import (answer_values, pair_batch, pair_token_logps, pair_token_logps_plain,
                                          pair_token_logps_shared)
from vlm_families import FAMILIES

# where the shared-prompt forward is the model's own computation (families.py says why not elsewhere)
SHARED = set(FAMILIES)
QUESTIONS = ["what is in the picture?", "how many cars are there on the road today?"]
GENERATED = 6


def encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (56, 48 + 8 * i, 3), dtype=np.uint8)) for i in range(2)]


@pytest.fixture(scope="module", params=FAMILIES)
def family(request, family_checkpoint):
    path = family_checkpoint(request.param)
    torch.manual_seed(0)
    return request.param, path, load_model(path).eval(), load_processor(path)


def _greedy(model, processor, images, questions):
    """Generated ids (GENERATED per row, stop tokens suppressed) and their log-probs under
    generation's own forward passes."""
    inputs = prompt_inputs(processor, images, questions, padding_side="left")
    out = model.generate(**inputs, max_new_tokens=GENERATED, min_new_tokens=GENERATED, do_sample=False,
                         output_logits=True, return_dict_in_generate=True,
                         pad_token_id=processor.tokenizer.pad_token_id, eos_token_id=stop_token_ids(processor))
    ids = out.sequences[:, inputs["input_ids"].shape[1]:]
    logps = torch.stack(out.logits, dim=1).float().log_softmax(-1).gather(-1, ids[..., None])[..., 0]
    return ids.tolist(), logps


def _rows(processor, images, chosen, rejected) -> dict:
    return {"prompt_ids": encode_prompts(processor, images, QUESTIONS), "question": QUESTIONS,
            "chosen_ids": chosen, "rejected_ids": rejected, "image": [encode_png(im) for im in images]}


def test_prompts_have_one_bos_and_answers_end_with_the_turn(family):
    name, _, model, processor = family
    tokenizer = processor.tokenizer
    [prompt] = encode_prompts(processor, _images()[:1], QUESTIONS[:1])
    if tokenizer.bos_token_id is not None:
        assert prompt[:2] != [tokenizer.bos_token_id] * 2  # Gemma 3's template writes bos itself
    [answer] = encode_answers(processor, QUESTIONS[:1], ["two red cars."])
    eos = model.generation_config.eos_token_id
    assert answer[-1] in (eos if isinstance(eos, list) else [eos])  # the real model's stop tokens
    assert tokenizer.decode(answer, skip_special_tokens=True).strip() == "two red cars."


def test_teacher_forcing_equals_generation(family):
    """The plain forward over prompt + generated answer gives the log-probs generation computed
    step by step: positions, attention and token types as the model's own `generate` has them."""
    name, _, model, processor = family
    images = _images()
    generated, generation_logps = _greedy(model, processor, images, QUESTIONS)
    batch = pair_batch(_rows(processor, images, generated, [g[:3] for g in generated]), processor)
    with torch.no_grad():
        logps, chosen_mask, _ = pair_token_logps_plain(model, batch)
    got = torch.tensor(answer_values(logps.chosen, chosen_mask))
    assert torch.allclose(got, generation_logps, atol=2e-4), (got - generation_logps).abs().max()


def test_shared_prompt_forward_where_proven(family):
    name, _, model, processor = family
    assert uses_shared_prompt(model) == (name in SHARED)
    if name in SHARED:
        _assert_shared_equals_plain(name, model, processor)


@pytest.mark.parametrize("name", ["llava", "qwen2_vl", "gemma3"])
def test_shared_prompt_forward_with_eager_attention(name, family_checkpoint):
    """Eager attention adds the packed row's mask to its scores (SDPA takes it as bool)."""
    path = family_checkpoint(name)
    model = AutoModelForImageTextToText.from_pretrained(path, attn_implementation="eager").eval()
    assert uses_shared_prompt(model)
    _assert_shared_equals_plain(name, model, load_processor(path))


def _assert_shared_equals_plain(name, model, processor):
    images = _images()
    chosen = encode_answers(processor, QUESTIONS, ["two red cars.", "none at all, the road is empty."])
    # long enough that a sliding window (Gemma 3's, 64 here) cuts into the prompt
    long = " ".join(["a blue kite flies above three cars and a dog sits on the road."] * 6)
    rejected = encode_answers(processor, QUESTIONS, [long, "four."])
    batch = pair_batch(_rows(processor, images, chosen, rejected), processor)
    if name == "gemma3":
        assert batch["rejected_input_ids"].shape[1] > model.config.get_text_config().sliding_window + 10
    with torch.no_grad():
        plain, plain_chosen, plain_rejected = pair_token_logps_plain(model, batch)
        shared, shared_chosen, shared_rejected = pair_token_logps_shared(model, batch)
    assert torch.equal(plain_chosen, shared_chosen) and torch.equal(plain_rejected, shared_rejected)
    assert torch.allclose(plain.chosen, shared.chosen, atol=1e-4)
    assert torch.allclose(plain.rejected, shared.rejected, atol=1e-4)


def test_reference_logps_equal_the_trainers_forward(family):
    """What build-shards caches (eval, no grad) is what the DDPO loss computes (train mode, grad)."""
    name, _, model, processor = family
    images = _images()
    chosen = encode_answers(processor, QUESTIONS, ["two red cars.", "three."])
    rejected = encode_answers(processor, QUESTIONS, ["two blue cars.", "four."])
    batch = pair_batch(_rows(processor, images, chosen, rejected), processor)
    with torch.inference_mode():
        reference = pair_token_logps(model, batch)[0]
    model.train()
    try:
        trained = pair_token_logps(model, batch)[0]
        trained.chosen.sum().backward()
    finally:
        model.eval()
        model.zero_grad()
    assert torch.allclose(reference.chosen, trained.chosen.detach(), atol=1e-5)
    assert torch.allclose(reference.rejected, trained.rejected.detach(), atol=1e-5)


def test_sft_batches_score_answers_as_pairs_do(family):
    name, _, model, processor = family
    images = _images()
    answers = ["two red cars.", "three."]
    encoded = encode_conversations(processor, images, [[(q, a)] for q, a in zip(QUESTIONS, answers)])
    prompts, answer_ids = encode_prompts(processor, images, QUESTIONS), encode_answers(processor, QUESTIONS, answers)
    assert [ids for ids, _ in encoded] == [p + a for p, a in zip(prompts, answer_ids)]
    batch = lm_batch(processor, images, QUESTIONS, [i for i, _ in encoded], [labels for _, labels in encoded])
    pairs = pair_batch(_rows(processor, images, answer_ids, answer_ids), processor)
    with torch.no_grad():
        sft_logps, sft_mask = forward_token_logps(model, batch)
        pair_logps, pair_mask = pair_token_logps_plain(model, pairs)[:2]
    assert torch.equal(sft_mask, pair_mask)
    assert torch.allclose(sft_logps, pair_logps.chosen, atol=1e-5)


def test_multi_turn_conversations(family):
    name, _, model, processor = family
    turns = [(QUESTIONS[0], "two red cars."), ("and what color are they?", "red.")]
    if name == "paligemma":  # no chat template: one question per image
        with pytest.raises(TemplateError):
            encode_conversations(processor, _images()[:1], [turns])
        return
    [(ids, labels)] = encode_conversations(processor, _images()[:1], [turns])
    targets = [t for t in labels if t != -100]
    assert processor.tokenizer.decode(targets, skip_special_tokens=True).replace(" ", "") == "tworedcars.red."
    batch = lm_batch(processor, _images()[:1], QUESTIONS[:1], [ids], [labels])
    with torch.no_grad():
        logps, mask = forward_token_logps(model, batch)
    assert int(mask.sum()) == len(targets) and torch.isfinite(logps).all()


def test_vision_encoder_and_lora_targets_are_found(family):
    from rlhfv_ray.training.lora import LoraSettings, target_module_names

    name, _, model, processor = family
    vision = vision_module(model)
    names = target_module_names(model, LoraSettings())
    vision_names = {id(m) for m in vision.modules()}
    modules = dict(model.named_modules())
    assert names and not any(id(modules[n]) in vision_names for n in names)


def test_serving_engine_batch_equals_generate(family):
    """Two requests in one batch through the serving engine: each text is what `model.generate`
    gives for that prompt in the same batch."""
    from rlhfv_ray.model.generate import GenerationSettings
    from serve_app.engine import Engine, GenerationJob

    name, path, model, processor = family
    images = _images()
    engine = Engine(str(path), device="cpu", dtype="float32")
    jobs = [GenerationJob((encode_png(image),), ({"role": "user", "content": [{"type": "image"},
                                                                              {"type": "text", "text": q}]},),
                          GenerationSettings(max_new_tokens=5)) for image, q in zip(images, QUESTIONS)]
    steps = list(engine.run(jobs))
    finals = [next(s[i] for s in reversed(steps) if s[i] is not None) for i in range(2)]
    assert all(f.error is None for f in finals), [f.error for f in finals]
    inputs = prompt_inputs(processor, images, QUESTIONS, padding_side="left")
    stops = stop_token_ids(processor)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=5, do_sample=False, pad_token_id=processor.tokenizer.pad_token_id,
                             eos_token_id=stops)
    for final, row in zip(finals, out[:, inputs["input_ids"].shape[1]:].tolist()):
        ends = [k for k, t in enumerate(row) if t in stops]
        text = processor.tokenizer.decode(row[:ends[0]] if ends else row, skip_special_tokens=True).strip()
        assert final.final.text == text
