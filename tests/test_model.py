"""The tiny LLaVA loads through the same Auto* path as LLaVA-1.5, encodes and generates."""

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor, LlavaForConditionalGeneration

from rlhfv_ray.model.encoding import build_lm_batch, encode_answers, encode_prompts, user_prompt
from rlhfv_ray.scene_world.tiny_llava import pixel_values
from rlhfv_ray.model.generate import GenerationSettings, generate
from rlhfv_ray.model.io import cached_processor, fingerprint, processor_hash
from rlhfv_ray.model.logprobs import forward_token_logps
from rlhfv_ray.scene_world.render import render_scene
from rlhfv_ray.scene_world.scene import sample_scene


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
    answer_ids = encode_answers(processor, ["Describe the image."], ["two red cars"])
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


def test_a_processor_is_loaded_once_per_process_until_its_files_change(tiny_model_dir, tmp_path):
    import shutil

    model = tmp_path / "m"
    shutil.copytree(tiny_model_dir, model)
    assert processor_hash(model) == fingerprint(model)["tokenizer"]
    first = cached_processor(str(model), processor_hash(model))
    assert cached_processor(str(model), processor_hash(model)) is first
    template = model / "chat_template.jinja"
    template.write_text(template.read_text() + "{# changed #}")
    changed = cached_processor(str(model), processor_hash(model))
    assert changed is not first and changed.chat_template.endswith("{# changed #}")


def test_shared_prompt_forward_equals_two_full_forwards(tiny_model_dir):
    """Chosen and rejected packed in one row after their prompt: the same log-probs, masks and
    gradients as two full sequences, with prompts and answers of different lengths in one batch."""
    from rlhfv_ray.model.pair_forward import pair_batch, pair_token_logps_plain, pair_token_logps_shared
    from rlhfv_ray.scene_world.grammar import DESCRIPTION_PROMPTS
    from rlhfv_ray.scene_world.render import image_to_png_bytes

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    scenes = [sample_scene(i) for i in range(3)]
    images = [render_scene(s) for s in scenes]
    short, long = "One red car is at the top left.", "One red car is at the top left. Two blue cups are at the top right."
    questions = [DESCRIPTION_PROMPTS[i] for i in (0, 1, 3)]
    rows = {"prompt_ids": encode_prompts(processor, images, questions), "question": questions,
            "chosen_ids": encode_answers(processor, questions, [short, long, short]),
            "rejected_ids": encode_answers(processor, questions, [long, short.replace("red", "blue"), "No."]),
            "image": [image_to_png_bytes(im) for im in images]}
    assert len({len(p) for p in rows["prompt_ids"]}) == 3
    batch = pair_batch(rows, processor)
    results = []
    for forward in (pair_token_logps_plain, pair_token_logps_shared):
        model.zero_grad()
        logps, chosen_mask, rejected_mask = forward(model, batch)
        (logps.chosen.sum() - 0.5 * logps.rejected.sum()).backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        results.append((logps, chosen_mask, rejected_mask, grads))
    (full, full_chosen, full_rejected, full_grads), (shared, chosen, rejected, grads) = results
    assert torch.equal(chosen, full_chosen) and torch.equal(rejected, full_rejected)
    assert chosen.sum() == sum(len(a) for a in rows["chosen_ids"])
    assert torch.allclose(shared.chosen, full.chosen, atol=1e-5)
    assert torch.allclose(shared.rejected, full.rejected, atol=1e-5)
    assert torch.allclose(grads, full_grads, atol=1e-4, rtol=1e-4)


def test_large_checkpoints_are_fingerprinted_by_header_and_every_tensor(tmp_path, monkeypatch):
    """Over the size limit, a safetensors file is hashed by its header and each tensor's first
    bytes: a change to any tensor's values is caught, a copy is not a change."""
    import shutil

    from safetensors.torch import save_file

    from rlhfv_ray.model import io

    monkeypatch.setattr(io, "_FULL_HASH_BYTES", 0)  # every file counts as large
    tensors = {"a.weight": torch.zeros(4096), "b.weight": torch.ones(8, 512)}
    (tmp_path / "m").mkdir()
    save_file(tensors, tmp_path / "m" / "model.safetensors")
    before = fingerprint(tmp_path / "m")
    shutil.copytree(tmp_path / "m", tmp_path / "copy")
    assert fingerprint(tmp_path / "copy") == before
    tensors["b.weight"][0, 0] = 2.0
    save_file(tensors, tmp_path / "m" / "model.safetensors")
    assert fingerprint(tmp_path / "m")["model"] != before["model"]


def test_an_adapters_fingerprint_covers_its_base(tiny_model_dir, tmp_path):
    import json
    import shutil

    from rlhfv_ray.training.lora import LoraSettings, apply_lora

    shutil.copytree(tiny_model_dir, tmp_path / "base")
    apply_lora(AutoModelForImageTextToText.from_pretrained(tmp_path / "base"), LoraSettings(r=2)).save_pretrained(
        tmp_path / "adapter")
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"] \
        == str(tmp_path / "base")
    before = fingerprint(tmp_path / "adapter")
    model = AutoModelForImageTextToText.from_pretrained(tmp_path / "base")
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    model.save_pretrained(tmp_path / "base")  # the base changes under the same adapter
    assert fingerprint(tmp_path / "adapter")["model"] != before["model"]
