"""The tiny LLaVA loads through the same Auto* path as LLaVA-1.5, encodes and generates."""

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor, LlavaForConditionalGeneration

from rlhfv_ray.model.encoding import build_lm_batch, encode_answers, encode_prompts, pixel_values, user_prompt
from rlhfv_ray.model.generate import GenerationSettings, generate
from rlhfv_ray.model.io import fingerprint
from rlhfv_ray.training.logprobs import forward_token_logps
from rlhfv_ray.world.render import render_scene
from rlhfv_ray.world.scene import sample_scene


def test_saved_model_loads_with_auto_classes(tiny_model_dir):
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    assert isinstance(model, LlavaForConditionalGeneration)
    assert type(processor).__name__ == "LlavaProcessor"
    n_params = sum(p.numel() for p in model.parameters())
    assert 1_000_000 < n_params < 10_000_000
    prompt = user_prompt(processor, "Describe the image in detail.")
    assert prompt == "USER: <image>\nDescribe the image in detail. ASSISTANT:"


def test_world_words_are_single_tokens(tiny_model_dir):
    tokenizer = AutoProcessor.from_pretrained(tiny_model_dir).tokenizer
    for word in ("red", "buses", "umbrella", "top", "center", "scene"):
        assert len(tokenizer(" " + word, add_special_tokens=False)["input_ids"]) == 1
    text = " Three yellow buses are at the bottom center."
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text  # byte-level BPE round-trips exactly


def test_prompt_expands_one_token_per_patch(tiny_model_dir):
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    image = render_scene(sample_scene(0))
    [ids] = encode_prompts(processor, [image], ["Describe the image."])
    image_token = processor.tokenizer.convert_tokens_to_ids("<image>")
    assert ids.count(image_token) == 9  # 96 px / 32 px patches: a 3x3 grid


def test_teacher_forced_logps_match_generation_scores(tiny_model_dir):
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir).eval()
    image = render_scene(sample_scene(3))
    [gen] = generate(model, processor, [image], ["Describe the image."], GenerationSettings(max_new_tokens=5))
    assert gen.completion_tokens <= 5
    # The answer tokenized on its own reproduces what generation emitted after the prompt.
    prompt_ids = encode_prompts(processor, [image], ["Describe the image."])
    answer_ids = encode_answers(processor.tokenizer, ["two red cars"])
    batch = build_lm_batch(prompt_ids, answer_ids, processor.tokenizer.pad_token_id)
    batch["pixel_values"] = pixel_values(processor, [image])
    with torch.no_grad():
        logps, mask = forward_token_logps(model, batch)
    assert mask.sum().item() == len(answer_ids[0])
    assert torch.all(logps[mask] < 0)


def test_fingerprint_changes_with_weights(tiny_model_dir, tmp_path):
    before = fingerprint(tiny_model_dir)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    model.save_pretrained(tmp_path)
    AutoProcessor.from_pretrained(tiny_model_dir).save_pretrained(tmp_path)
    after = fingerprint(tmp_path)
    assert before["tokenizer"] == after["tokenizer"] and before["model"] != after["model"]
