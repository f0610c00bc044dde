"""Tiny random-weight checkpoints of ten vision-language model families, built locally.

`build_family(name, out_dir)` writes a directory that the Auto classes load like a hub checkpoint:

    model = AutoModelForImageTextToText.from_pretrained(d)
    processor = rlhfv_ray.model.io.load_processor(d)

Each directory holds the family's real config classes at toy sizes (2 text layers, hidden 32, a vision
tower of 2 layers), a tokenizer made here with the `tokenizers` library (byte-fallback BPE over ASCII
characters plus a few English words, with the family's real special tokens), the family's processor
with its real chat template (chat_template.jinja; PaliGemma has none, as on the hub), and a
generation_config.json with the real model's eos ids. Nothing is downloaded.

Images: a 56x56 RGB image becomes 4 (qwen*, gemma3), 16 (llava, paligemma), 24 (llava_next,
llava_onevision) or 20 (idefics3, smolvlm: 2x2 crops and a global view, plus row/col markers) image
placeholder tokens; every image processor is sized so that any image stays about that small. The
idefics3, smolvlm and gemma3 processors want one list of images per prompt: see `images_arg`.

Families with a video processor (qwen2_vl, qwen2_5_vl, qwen3_vl, llava_onevision, smolvlm) are built
without it, as `rlhfv_ray.model.io.load_processor` loads them where torchvision (which transformers'
video processors need) is missing: see `image_only_processor_class`.

The SmolVLM processor imports `num2words` (pip package) and refuses to start without it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import (AutoModelForImageTextToText, GenerationConfig, LlavaOnevisionProcessor,
                          PreTrainedTokenizerFast, Qwen2_5_VLProcessor, Qwen2VLProcessor, Qwen3VLProcessor,
                          SmolVLMProcessor)

from rlhfv_ray.model.io import image_only_processor_class

FAMILIES: tuple[str, ...] = (
    "llava", "llava_next", "llava_onevision", "qwen2_vl", "qwen2_5_vl", "qwen3_vl",
    "idefics3", "smolvlm", "paligemma", "gemma3",
)
NESTED_IMAGE_FAMILIES = frozenset({"idefics3", "smolvlm", "gemma3"})

HIDDEN = 32  # text and vision width
TEXT = dict(hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=2, max_position_embeddings=1024)
VISION = dict(hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)


def images_arg(name: str, images: list) -> list:
    """The `images=` argument for one image per prompt: nested per prompt where the processor wants it."""
    return [[image] for image in images] if name in NESTED_IMAGE_FAMILIES else list(images)


# ----------------------------------------------------------------------------------------- tokenizer

_WORDS = ("the", "a", "an", "is", "are", "of", "and", "in", "on", "to", "it", "what", "this", "that",
          "image", "picture", "photo", "describe", "there", "color", "colour", "how", "many", "yes",
          "no", "you", "user", "assistant", "system", "model", "helpful", "red", "blue", "green",
          "car", "cat", "dog", "question", "answer")
_PRETOKENIZE = Regex(r" ?[A-Za-z]+| ?[0-9]| ?[^A-Za-z0-9\s]+|\s+")


@dataclass(frozen=True)
class TokSpec:
    specials: tuple[str, ...]  # special tokens, given the first ids in this order
    bos: str | None
    eos: str
    pad: str
    unk: str | None = None
    add_bos: bool = False  # prepend bos when encoding (Llama, Mistral, Gemma tokenizers)
    named: dict = field(default_factory=dict)  # model-specific named tokens, e.g. image_token


def _word_merges() -> tuple[list[str], list[tuple[str, str]]]:
    """Prefix-chain merges for common words, with and without a leading space."""
    pieces, merges = [], []
    for words in ([" " + w for w in _WORDS], list(_WORDS)):
        for word in words:
            for i in range(2, len(word) + 1):
                pair = (word[:i - 1], word[i - 1])
                if pair not in merges:
                    merges.append(pair)
                    pieces.append(word[:i])
    return pieces, merges


def make_tokenizer(spec: TokSpec) -> PreTrainedTokenizerFast:
    """A byte-fallback BPE: ASCII characters, some English words, <0xNN> bytes for everything else."""
    pieces, merges = _word_merges()
    vocab: dict[str, int] = {}
    for token in (*spec.specials, *(f"<0x{i:02X}>" for i in range(256)),
                  *(chr(i) for i in range(32, 127)), *pieces):
        vocab.setdefault(token, len(vocab))
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=spec.unk, byte_fallback=True,
                                   fuse_unk=spec.unk is not None))
    backend.pre_tokenizer = pre_tokenizers.Split(_PRETOKENIZE, behavior="isolated")
    backend.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in spec.specials])
    if spec.add_bos:
        backend.post_processor = processors.TemplateProcessing(
            single=f"{spec.bos} $A", pair=f"{spec.bos} $A {spec.bos} $B",
            special_tokens=[(spec.bos, vocab[spec.bos])])
    tokens = {"bos_token": spec.bos, "eos_token": spec.eos, "pad_token": spec.pad, "unk_token": spec.unk}
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, clean_up_tokenization_spaces=False, model_max_length=1024,
        extra_special_tokens=dict(spec.named) or None,
        **{k: v for k, v in tokens.items() if v is not None})


_LLAMA2 = ("<unk>", "<s>", "</s>")
_QWEN = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
         "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
         "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")
_QWEN_NAMED = {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
               "vision_start_token": "<|vision_start|>", "vision_end_token": "<|vision_end|>"}
_ROW_COL = tuple(f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7))
_IDEFICS_IMAGE = ("<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>", *_ROW_COL)
_IDEFICS_NAMED = {"fake_image_token": "<fake_token_around_image>", "image_token": "<image>",
                  "end_of_utterance_token": "<end_of_utterance>", "global_image_token": "<global-img>"}
_GEMMA = ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>")

TOKENIZERS: dict[str, TokSpec] = {
    "llava": TokSpec((*_LLAMA2, "<image>", "<pad>"), "<s>", "</s>", "<pad>", "<unk>", add_bos=True,
                     named={"image_token": "<image>"}),
    "llava_next": TokSpec((*_LLAMA2, "<image>", "<pad>"), "<s>", "</s>", "<pad>", "<unk>", add_bos=True,
                          named={"image_token": "<image>"}),
    "llava_onevision": TokSpec((*_QWEN[:3], "<image>", "<video>"), None, "<|im_end|>", "<|endoftext|>",
                               named={"image_token": "<image>", "video_token": "<video>"}),
    "qwen2_vl": TokSpec(_QWEN, None, "<|im_end|>", "<|endoftext|>", named=_QWEN_NAMED),
    "qwen2_5_vl": TokSpec(_QWEN, None, "<|im_end|>", "<|endoftext|>", named=_QWEN_NAMED),
    "qwen3_vl": TokSpec(_QWEN, None, "<|im_end|>", "<|endoftext|>", named=_QWEN_NAMED),
    "idefics3": TokSpec(("<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                         *_IDEFICS_IMAGE), "<|begin_of_text|>", "<|end_of_text|>",
                        "<|reserved_special_token_0|>", add_bos=True, named=_IDEFICS_NAMED),
    "smolvlm": TokSpec(("<|endoftext|>", "<|im_start|>", "<|im_end|>", *_IDEFICS_IMAGE), "<|im_start|>",
                       "<end_of_utterance>", "<|im_end|>", "<|endoftext|>", named=_IDEFICS_NAMED),
    "paligemma": TokSpec((*_GEMMA, "<image>"), "<bos>", "<eos>", "<pad>", "<unk>", add_bos=True,
                         named={"image_token": "<image>"}),
    "gemma3": TokSpec((*_GEMMA, "<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>",
                       "<image_soft_token>"), "<bos>", "<eos>", "<pad>", "<unk>", add_bos=True,
                      named={"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
                             "image_token": "<image_soft_token>"}),
}

# The real models' generation_config eos ids, by token.
EOS_TOKENS: dict[str, tuple[str, ...]] = {
    "llava": ("</s>",), "llava_next": ("</s>",), "llava_onevision": ("<|im_end|>",),
    "qwen2_vl": ("<|im_end|>", "<|endoftext|>"), "qwen2_5_vl": ("<|im_end|>", "<|endoftext|>"),
    "qwen3_vl": ("<|im_end|>", "<|endoftext|>"), "idefics3": ("<|end_of_text|>", "<end_of_utterance>"),
    "smolvlm": ("<|im_end|>", "<end_of_utterance>"), "paligemma": ("<eos>",),
    "gemma3": ("<eos>", "<end_of_turn>"),
}

# ------------------------------------------------------------------------------------ chat templates

_IMAGES_FIRST = ("{# Render all images first #}{% for content in message['content'] | selectattr('type', "
                 "'equalto', 'image') %}")
LLAVA_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}"
    "{% endif %}" + _IMAGES_FIRST + "{{ '<image>\n' }}{% endfor %}{# Render all text next #}"
    "{% if message['role'] != 'assistant' %}{% for content in message['content'] | selectattr('type', "
    "'equalto', 'text') %}{{ content['text'] + ' '}}{% endfor %}{% else %}{% for content in "
    "message['content'] | selectattr('type', 'equalto', 'text') %}{% generation %}{{ content['text'] + "
    "' '}}{% endgeneration %}{% endfor %}{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "{{ 'ASSISTANT:' }}{% endif %}")
LLAVA_NEXT_MISTRAL_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{ '<<SYS>>\n' + "
    "message['content'][0]['text'] + '\n<</SYS>>\n\n' }}{% elif message['role'] == 'user' %}"
    "{{ '[INST] ' }}" + _IMAGES_FIRST + "{{ '<image>\n' }}{% endfor %}{# Render all text next #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}"
    "{% endfor %}{{' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' ' + "
    "message['content'][0]['text'] + '</s> '}}{% else %}{{ raise_exception('Only user and assistant "
    "roles are supported!') }}{% endif %}{% endfor %}")
LLAVA_ONEVISION_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n'}}" + _IMAGES_FIRST
    + "{{ '<image>\n' }}{% endfor %}{# Render all video then #}{% for content in message['content'] | "
    "selectattr('type', 'equalto', 'video') %}{{ '<video>\n' }}{% endfor %}{# Render all text next #}"
    "{% if message['role'] != 'assistant' %}{% for content in message['content'] | selectattr('type', "
    "'equalto', 'text') %}{{ content['text'] }}{% endfor %}{% else %}{% for content in "
    "message['content'] | selectattr('type', 'equalto', 'text') %}{% generation %}{{ content['text'] }}"
    "{% endgeneration %}{% endfor %}{% endif %}{{'<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
QWEN2_VL_TEMPLATE = (  # Qwen2-VL-2B-Instruct and Qwen2.5-VL-3B-Instruct ship the same template
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in "
    "messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful "
    "assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is "
    "string %}{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}{% set "
    "image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'video' or 'video' "
    "in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video "
    "{{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in "
    "content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
_QWEN3_VISION = """                {%- if content.type == 'image' or 'image' in content or 'image_url' in content %}
                    {%- set image_count.value = image_count.value + 1 %}
                    {%- if add_vision_id %}Picture {{ image_count.value }}: {% endif -%}
                    <|vision_start|><|image_pad|><|vision_end|>
                {%- elif content.type == 'video' or 'video' in content %}
                    {%- set video_count.value = video_count.value + 1 %}
                    {%- if add_vision_id %}Video {{ video_count.value }}: {% endif -%}
                    <|vision_start|><|video_pad|><|vision_end|>
                {%- elif 'text' in content %}
                    {{- content.text }}
                {%- endif %}
"""
_QWEN3_SYSTEM_TEXT = """        {%- if messages[0].content is string %}
            {{- messages[0].content }}
        {%- else %}
            {%- for content in messages[0].content %}
                {%- if 'text' in content %}
                    {{- content.text }}
                {%- endif %}
            {%- endfor %}
        {%- endif %}
"""
QWEN3_VL_TEMPLATE = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0].role == 'system' %}
""" + _QWEN3_SYSTEM_TEXT + """        {{- '\\n\\n' }}
    {%- endif %}
    {{- "# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided \
with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments \
within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": \
<args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\\n' }}
""" + _QWEN3_SYSTEM_TEXT + """        {{- '<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- set image_count = namespace(value=0) %}
{%- set video_count = namespace(value=0) %}
{%- for message in messages %}
    {%- if message.role == "user" %}
        {{- '<|im_start|>' + message.role + '\\n' }}
        {%- if message.content is string %}
            {{- message.content }}
        {%- else %}
            {%- for content in message.content %}
""" + _QWEN3_VISION + """            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role + '\\n' }}
        {%- if message.content is string %}
            {{- message.content }}
        {%- else %}
            {%- for content_item in message.content %}
                {%- if 'text' in content_item %}
                    {{- content_item.text }}
                {%- endif %}
            {%- endfor %}
        {%- endif %}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and message.content) or (not loop.first) %}
                    {{- '\\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {%- if message.content is string %}
            {{- message.content }}
        {%- else %}
            {%- for content in message.content %}
""" + _QWEN3_VISION + """            {%- endfor %}
        {%- endif %}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""
_IDEFICS_BODY = (
    "{% for message in messages %}{{message['role'] | capitalize}}{% if message['content'][0]['type'] == "
    "'image' %}{{':'}}{% else %}{{': '}}{% endif %}{% for line in message['content'] %}{% if line['type'] "
    "== 'text' %}{{line['text']}}{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}")
IDEFICS3_TEMPLATE = "<|begin_of_text|>" + _IDEFICS_BODY
SMOLVLM_TEMPLATE = "<|im_start|>" + _IDEFICS_BODY
GEMMA3_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
"""

# ---------------------------------------------------------------------------------------- families

def _ids(tok, *tokens: str) -> list[int]:
    return [tok.convert_tokens_to_ids(t) for t in tokens]


def _text_ids(tok) -> dict:
    return {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}


def _llava(tok):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**VISION, image_size=56, patch_size=14, projection_dim=HIDDEN),
        text_config=LlamaConfig(vocab_size=len(tok), **TEXT, **_text_ids(tok)),
        image_token_index=tok.convert_tokens_to_ids("<image>"), image_seq_length=16,
        vision_feature_layer=-2, vision_feature_select_strategy="default", pad_token_id=tok.pad_token_id)
    images = CLIPImageProcessorPil(size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56})
    processor = LlavaProcessor(images, tok, patch_size=14, vision_feature_select_strategy="default",
                               num_additional_image_tokens=1, chat_template=LLAVA_TEMPLATE)
    return config, processor


_NEXT_PINPOINTS = [[28, 56], [56, 28], [56, 56], [84, 28], [28, 84]]  # llava-v1.6's, divided by 12


def _llava_next(tok):
    from transformers import CLIPVisionConfig, LlavaNextConfig, LlavaNextProcessor, MistralConfig
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

    config = LlavaNextConfig(
        vision_config=CLIPVisionConfig(**VISION, image_size=28, patch_size=14, projection_dim=HIDDEN),
        text_config=MistralConfig(vocab_size=len(tok), **TEXT, **_text_ids(tok)),
        image_token_index=tok.convert_tokens_to_ids("<image>"), image_grid_pinpoints=_NEXT_PINPOINTS,
        vision_feature_layer=-2, vision_feature_select_strategy="default", image_seq_length=4,
        pad_token_id=tok.pad_token_id)
    images = LlavaNextImageProcessorPil(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28},
                                        image_grid_pinpoints=_NEXT_PINPOINTS)
    processor = LlavaNextProcessor(images, tok, patch_size=14, vision_feature_select_strategy="default",
                                   num_additional_image_tokens=1, chat_template=LLAVA_NEXT_MISTRAL_TEMPLATE)
    return config, processor


_OV_PINPOINTS = [[28 * i, 28 * j] for i in range(1, 4) for j in range(1, 4)]  # 384-px grid, divided


def _llava_onevision(tok):
    from transformers import LlavaOnevisionConfig, Qwen2Config, SiglipVisionConfig
    from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
        LlavaOnevisionImageProcessorPil)

    config = LlavaOnevisionConfig(
        vision_config=SiglipVisionConfig(**VISION, image_size=28, patch_size=14),
        text_config=Qwen2Config(vocab_size=len(tok), **TEXT, **_text_ids(tok)),
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        video_token_index=tok.convert_tokens_to_ids("<video>"), image_grid_pinpoints=_OV_PINPOINTS,
        vision_feature_layer=-1, vision_feature_select_strategy="full", vision_aspect_ratio="anyres_max_9")
    images = LlavaOnevisionImageProcessorPil(size={"height": 28, "width": 28}, image_grid_pinpoints=_OV_PINPOINTS)
    processor = image_only_processor_class(LlavaOnevisionProcessor)(
        images, tok, None, num_image_tokens=4, vision_feature_select_strategy="full",
        vision_aspect_ratio="anyres_max_9", chat_template=LLAVA_ONEVISION_TEMPLATE)
    return config, processor


def _qwen_ids(tok) -> dict:
    image, video, start, end = _ids(tok, "<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
    return dict(image_token_id=image, video_token_id=video, vision_start_token_id=start, vision_end_token_id=end)


def _qwen_text(tok, mrope_section, **extra) -> dict:
    rope = {"rope_type": "default", "mrope_section": mrope_section, "rope_theta": 1e6, **extra}
    return dict(vocab_size=len(tok), **TEXT, rope_parameters=rope, **_text_ids(tok))


def _qwen_images(patch: int):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    factor = patch * 2  # a 56x56 image -> 2x2 merged patches = 4 image tokens; at most 4x4
    return Qwen2VLImageProcessorPil(min_pixels=(2 * factor) ** 2, max_pixels=(4 * factor) ** 2,
                                    patch_size=patch, merge_size=2, temporal_patch_size=2)


def _qwen2_vl(tok):
    from transformers import Qwen2VLConfig

    config = Qwen2VLConfig(
        vision_config=dict(depth=2, embed_dim=HIDDEN, hidden_size=HIDDEN, mlp_ratio=2, num_heads=2,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2),
        text_config=_qwen_text(tok, [2, 3, 3]), **_qwen_ids(tok))
    processor = image_only_processor_class(Qwen2VLProcessor)(_qwen_images(14), tok, None,
                                                             chat_template=QWEN2_VL_TEMPLATE)
    return config, processor


def _qwen2_5_vl(tok):
    from transformers import Qwen2_5_VLConfig

    config = Qwen2_5_VLConfig(
        vision_config=dict(depth=2, hidden_size=HIDDEN, intermediate_size=64, num_heads=2, out_hidden_size=HIDDEN,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=56,
                           fullatt_block_indexes=[1]),
        text_config=_qwen_text(tok, [2, 3, 3]), **_qwen_ids(tok))
    processor = image_only_processor_class(Qwen2_5_VLProcessor)(_qwen_images(14), tok, None,
                                                                chat_template=QWEN2_VL_TEMPLATE)
    return config, processor


def _qwen3_vl(tok):
    from transformers import Qwen3VLConfig

    config = Qwen3VLConfig(
        vision_config=dict(depth=2, hidden_size=HIDDEN, intermediate_size=64, num_heads=2, out_hidden_size=HIDDEN,
                           patch_size=16, spatial_merge_size=2, temporal_patch_size=2,
                           num_position_embeddings=64, deepstack_visual_indexes=[0]),
        text_config=_qwen_text(tok, [4, 2, 2], mrope_interleaved=True) | {"head_dim": 16},
        **_qwen_ids(tok))
    processor = image_only_processor_class(Qwen3VLProcessor)(_qwen_images(16), tok, None,
                                                             chat_template=QWEN3_VL_TEMPLATE)
    return config, processor


def _idefics_like(tok, config_class, image_processor_class, image_size: int, patch_size: int):
    """Idefics3 and its derivative SmolVLM: a SigLIP-like tower, pixel shuffle, image splitting."""
    from transformers import LlamaConfig

    config = config_class(
        vision_config=dict(**VISION, image_size=image_size, patch_size=patch_size),
        text_config=LlamaConfig(vocab_size=len(tok), **TEXT, **_text_ids(tok)),
        image_token_id=tok.convert_tokens_to_ids("<image>"), scale_factor=2, pad_token_id=tok.pad_token_id)
    images = image_processor_class(size={"longest_edge": 2 * image_size}, max_image_size={"longest_edge": image_size},
                                   do_image_splitting=True)
    return config, images


def _idefics3(tok):
    from transformers import Idefics3Config, Idefics3Processor
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    config, images = _idefics_like(tok, Idefics3Config, Idefics3ImageProcessorPil, image_size=56, patch_size=14)
    return config, Idefics3Processor(images, tok, image_seq_len=4, chat_template=IDEFICS3_TEMPLATE)


def _smolvlm(tok):
    from transformers import SmolVLMConfig
    from transformers.models.smolvlm.image_processing_pil_smolvlm import SmolVLMImageProcessorPil

    config, images = _idefics_like(tok, SmolVLMConfig, SmolVLMImageProcessorPil, image_size=64, patch_size=16)
    processor = image_only_processor_class(SmolVLMProcessor)(images, tok, None, image_seq_len=4,
                                                             chat_template=SMOLVLM_TEMPLATE)
    return config, processor


def _paligemma(tok):
    from transformers import GemmaConfig, PaliGemmaConfig, PaliGemmaProcessor, SiglipVisionConfig
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    images = SiglipImageProcessorPil(size={"height": 56, "width": 56}, image_seq_length=16)
    processor = PaliGemmaProcessor(images, tok)  # adds <loc####>/<seg###> tokens to the tokenizer
    config = PaliGemmaConfig(
        vision_config=SiglipVisionConfig(**VISION, image_size=56, patch_size=14, projection_dim=HIDDEN),
        text_config=GemmaConfig(vocab_size=len(tok), **TEXT | {"num_key_value_heads": 1}, head_dim=16,
                                **_text_ids(tok)),
        image_token_index=tok.convert_tokens_to_ids("<image>"), projection_dim=HIDDEN, hidden_size=HIDDEN,
        vocab_size=len(tok))
    return config, processor


def _gemma3(tok):
    from transformers import Gemma3Config, Gemma3Processor, Gemma3TextConfig, SiglipVisionConfig
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    boi, eoi, soft = _ids(tok, "<start_of_image>", "<end_of_image>", "<image_soft_token>")
    config = Gemma3Config(
        vision_config=SiglipVisionConfig(**VISION, image_size=56, patch_size=14),
        text_config=Gemma3TextConfig(vocab_size=len(tok), **TEXT | {"num_key_value_heads": 1}, head_dim=16,
                                     query_pre_attn_scalar=16, sliding_window=64,
                                     layer_types=["sliding_attention", "full_attention"], **_text_ids(tok)),
        mm_tokens_per_image=4, boi_token_index=boi, eoi_token_index=eoi, image_token_index=soft)
    images = Gemma3ImageProcessorPil(size={"height": 56, "width": 56})
    processor = Gemma3Processor(images, tok, chat_template=GEMMA3_TEMPLATE, image_seq_length=4)
    return config, processor


BUILDERS = {"llava": _llava, "llava_next": _llava_next, "llava_onevision": _llava_onevision,
            "qwen2_vl": _qwen2_vl, "qwen2_5_vl": _qwen2_5_vl, "qwen3_vl": _qwen3_vl, "idefics3": _idefics3,
            "smolvlm": _smolvlm, "paligemma": _paligemma, "gemma3": _gemma3}


# ------------------------------------------------------------------------------------------- build

def _patch_json(path: Path, **updates) -> None:
    data = json.loads(path.read_text())
    data.update(updates)
    path.write_text(json.dumps(data, indent=2) + "\n")


def build_family(name: str, out_dir: str | Path, seed: int = 0) -> Path:
    """Write a tiny random `name` checkpoint (model, tokenizer, processor, generation config) to out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = make_tokenizer(TOKENIZERS[name])
    config, processor = BUILDERS[name](tok)
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config)
    eos = _ids(tok, *EOS_TOKENS[name])
    bos = tok.bos_token_id if tok.bos_token_id is not None else tok.pad_token_id  # Qwen: <|endoftext|>
    model.generation_config = GenerationConfig(
        bos_token_id=bos, eos_token_id=eos if len(eos) > 1 else eos[0], pad_token_id=tok.pad_token_id)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    if name == "paligemma":  # its processor turns bos off in the tokenizer it holds (and at every load)
        tok.add_bos_token = True
        tok.save_pretrained(out)  # the saved tokenizer adds bos on its own, as the hub one does
    return out


if __name__ == "__main__":
    for family in sys.argv[2:] or FAMILIES:
        print(build_family(family, Path(sys.argv[1]) / family))
