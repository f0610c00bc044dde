"""The tiny VLM checkpoints of tests/vlm_families.py load with the Auto classes from disk and run.

Each family is built once per session; every test loads it back with AutoModelForImageTextToText and
the project's `load_processor` (AutoProcessor; without the video processor where torchvision is
missing), renders the real chat template and runs forward and generate on one and on two
(left-padded) prompts with a 56x56 image each.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoModelForImageTextToText

from rlhfv_ray.model.io import load_processor
from vlm_families import EOS_TOKENS, FAMILIES, build_family, images_arg

MODEL_CLASS = {
    "llava": "LlavaForConditionalGeneration", "llava_next": "LlavaNextForConditionalGeneration",
    "llava_onevision": "LlavaOnevisionForConditionalGeneration", "qwen2_vl": "Qwen2VLForConditionalGeneration",
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration", "qwen3_vl": "Qwen3VLForConditionalGeneration",
    "idefics3": "Idefics3ForConditionalGeneration", "smolvlm": "SmolVLMForConditionalGeneration",
    "paligemma": "PaliGemmaForConditionalGeneration", "gemma3": "Gemma3ForConditionalGeneration",
}
PROCESSOR_CLASS = {
    "llava": "LlavaProcessor", "llava_next": "LlavaNextProcessor", "llava_onevision": "LlavaOnevisionProcessor",
    "qwen2_vl": "Qwen2VLProcessor", "qwen2_5_vl": "Qwen2_5_VLProcessor", "qwen3_vl": "Qwen3VLProcessor",
    "idefics3": "Idefics3Processor", "smolvlm": "SmolVLMProcessor", "paligemma": "PaliGemmaProcessor",
    "gemma3": "Gemma3Processor",
}
GENERATION_PROMPT_END = {
    "llava": "ASSISTANT:", "llava_next": " [/INST]", "llava_onevision": "<|im_start|>assistant\n",
    "qwen2_vl": "<|im_start|>assistant\n", "qwen2_5_vl": "<|im_start|>assistant\n",
    "qwen3_vl": "<|im_start|>assistant\n", "idefics3": "Assistant:", "smolvlm": "Assistant:",
    "gemma3": "<start_of_turn>model\n",
}
# Leading bos tokens of a templated prompt run through the processor, as with the real checkpoints:
# the Llama/Mistral/Gemma tokenizers add one, the idefics3 and gemma3 templates write another, and
# SmolVLM's bos is the <|im_start|> its template opens with.
LEADING_BOS = {"llava": 1, "llava_next": 1, "idefics3": 2, "gemma3": 2, "smolvlm": 1}

def _load(path, name):
    model = AutoModelForImageTextToText.from_pretrained(path).eval()
    return model, load_processor(path)


def _image(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (56, 56, 3), dtype=np.uint8), "RGB")


def _conversation(question: str, answer: str | None = None) -> list[dict]:
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    if answer is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return messages


def _prompt(name, processor, question: str) -> str:
    if name == "paligemma":  # no chat template: the processor adds <image>s, bos and "\n" itself
        return question
    return processor.apply_chat_template(_conversation(question), add_generation_prompt=True)


def _forward_and_generate(model, inputs) -> None:
    with torch.no_grad():
        logits = model(**inputs).logits
        out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    batch, length = inputs["input_ids"].shape
    assert logits.shape[:2] == (batch, length) and torch.isfinite(logits).all()
    assert out.shape[0] == batch and length < out.shape[1] <= length + 5


@pytest.mark.parametrize("name", FAMILIES)
def test_loads_with_auto_classes(name, family_checkpoint):
    model, processor = _load(family_checkpoint(name), name)
    assert type(model).__name__ == MODEL_CLASS[name]
    assert PROCESSOR_CLASS[name] in [cls.__name__ for cls in type(processor).__mro__]
    assert not hasattr(processor, "video_processor")
    eos = model.generation_config.eos_token_id
    eos = eos if isinstance(eos, list) else [eos]
    assert eos == processor.tokenizer.convert_tokens_to_ids(list(EOS_TOKENS[name]))
    assert model.generation_config.pad_token_id == processor.tokenizer.pad_token_id is not None


@pytest.mark.parametrize("name", FAMILIES)
def test_chat_template(name, family_checkpoint):
    _, processor = _load(family_checkpoint(name), name)
    if name == "paligemma":
        assert processor.chat_template is None
        return
    prompt = _prompt(name, processor, "What is in the image?")
    full = processor.apply_chat_template(_conversation("What is in the image?", "A red car."))
    assert prompt.endswith(GENERATION_PROMPT_END[name])
    assert full.startswith(prompt) and "A red car." in full[len(prompt):]


@pytest.mark.parametrize("name", FAMILIES)
def test_one_prompt_forward_and_generate(name, family_checkpoint):
    model, processor = _load(family_checkpoint(name), name)
    prompt = _prompt(name, processor, "What is in the image?")
    inputs = processor(images=images_arg(name, [_image(0)]), text=[prompt], return_tensors="pt")
    ids, bos = inputs["input_ids"][0].tolist(), processor.tokenizer.bos_token_id
    assert next(i for i, t in enumerate(ids) if t != bos) == LEADING_BOS.get(name, 0)
    assert len(ids) <= 100
    _forward_and_generate(model, inputs)


@pytest.mark.parametrize("name", FAMILIES)
def test_batch_of_two_left_padded(name, family_checkpoint):
    model, processor = _load(family_checkpoint(name), name)
    processor.tokenizer.padding_side = "left"
    prompts = [_prompt(name, processor, "What is in the image?"), _prompt(name, processor, "Describe it.")]
    inputs = processor(images=images_arg(name, [_image(1), _image(2)]), text=prompts, padding=True,
                       return_tensors="pt")
    mask = inputs["attention_mask"]
    assert mask[:, -1].all() and not mask[:, 0].all()  # the shorter prompt is padded on the left
    _forward_and_generate(model, inputs)


@pytest.mark.parametrize("name", FAMILIES)
def test_build_is_deterministic(name, family_checkpoint, tmp_path):
    again = build_family(name, tmp_path / name, seed=0)
    first, second = load_file(family_checkpoint(name) / "model.safetensors"), load_file(again / "model.safetensors")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
