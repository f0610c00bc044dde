"""Typed arguments of the Serve application: what `serve run serve_app.app:build key=value ...` and the
`args:` section of `serve_app/serve_config.yaml` set. Unknown keys are an error (StrictModel).

On the `serve run` command line nested fields are given with dots (`limits.max_images=2`,
`model.max_replicas=4`); list fields also take a comma-separated string.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, SecretStr, field_validator, model_validator

from rlhfv_ray.config import StrictModel
from rlhfv_ray.images import ALLOWED_FORMATS


def _split_commas(value):
    """`a,b` from a command line -> ["a", "b"]; lists from YAML pass through."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Limits(StrictModel):
    """What one request may ask for; anything beyond is answered with a 4xx naming the limit."""

    max_image_bytes: int = Field(8 * 2**20, ge=1)  # encoded size of one image
    # Checked from the image header before decoding: a decompression bomb is refused unallocated.
    max_pixels: int = Field(4096 * 4096, ge=1)
    image_formats: list[str] = sorted(ALLOWED_FORMATS)
    max_images: int = Field(1, ge=1)  # LLaVA-1.5 (and the tiny model) are trained on one image
    max_question_chars: int = Field(2000, ge=1)
    max_prompt_chars: int = Field(8000, ge=1)  # all text of a chat request together
    max_messages: int = Field(32, ge=1)
    max_new_tokens: int = Field(256, ge=1)  # cap on what a request may ask for
    default_max_new_tokens: int = Field(128, ge=1)
    max_temperature: float = Field(2.0, ge=0)
    url_fetch_timeout_s: float = Field(5.0, gt=0)

    @field_validator("image_formats", mode="before")
    @classmethod
    def _formats(cls, value):
        """PIL's format names are upper case ("PNG"); accept "png" and "png,jpeg" too."""
        value = _split_commas(value)
        return [str(f).upper() for f in value] if isinstance(value, list) else value

    @model_validator(mode="after")
    def _defaults_within_caps(self) -> "Limits":
        if self.default_max_new_tokens > self.max_new_tokens:
            raise ValueError(f"default_max_new_tokens ({self.default_max_new_tokens}) exceeds "
                             f"max_new_tokens ({self.max_new_tokens})")
        return self

    @property
    def max_request_bytes(self) -> int:
        """Whole HTTP body: every image base64-encoded (4/3) plus the text, with headroom for JSON."""
        return self.max_images * math.ceil(self.max_image_bytes * 4 / 3) + 4 * self.max_prompt_chars + 64 * 1024


class Batching(StrictModel):
    """`@serve.batch` settings of the model replicas (changed live through `user_config`)."""

    max_batch_size: int = Field(8, ge=1)
    batch_wait_timeout_s: float = Field(0.02, ge=0)


class ModelReplicas(StrictModel):
    """The model deployment: replicas, autoscaling, admission."""

    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(1, ge=1)
    initial_replicas: int | None = None
    target_ongoing_requests: float = Field(8, gt=0)
    upscale_delay_s: float = Field(10.0, ge=0)
    downscale_delay_s: float = Field(60.0, ge=0)
    look_back_period_s: float = Field(30.0, gt=0)  # window the load is averaged over
    # A replica takes at most this many requests at once; it must cover a batch, or batches never fill.
    max_ongoing_requests: int = Field(16, ge=1)
    # Requests waiting at each caller beyond this are refused at once (503/429 + Retry-After).
    max_queued_requests: int = Field(64, ge=-1)
    num_cpus: float = Field(1.0, ge=0)
    num_gpus: float = Field(0.0, ge=0)
    health_check_period_s: float = Field(10.0, gt=0)
    health_check_timeout_s: float = Field(30.0, gt=0)
    env_vars: dict[str, str] = {}  # extra environment of the replica processes

    @model_validator(mode="after")
    def _consistent(self) -> "ModelReplicas":
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"max_replicas ({self.max_replicas}) < min_replicas ({self.min_replicas})")
        return self


class IngressReplicas(StrictModel):
    """The HTTP ingress: light (parsing, validation, awaiting the model), so many requests each."""

    num_replicas: int = Field(1, ge=1)
    max_ongoing_requests: int = Field(256, ge=1)
    max_queued_requests: int = Field(512, ge=-1)  # at the HTTP proxy
    num_cpus: float = Field(0.1, ge=0)
    # e.g. RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S: the ingress's handle reports the
    # model deployment's load to the autoscaler
    env_vars: dict[str, str] = {}


class ServeArgs(StrictModel):
    model_path: str
    model_name: str | None = None  # served as `model` in responses and /v1/models; default: directory name
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # auto: bf16 on CUDA (fp16 where the GPU has no bf16), fp32 on CPU
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    torch_threads: int | None = Field(None, ge=1)  # CPU threads per model replica (default: Ray's)
    # what /caption asks the model; set it to the phrasing your model was tuned on
    caption_prompt: str = Field("Describe the image in detail.", min_length=1)
    api_key: SecretStr | None = None  # when set, every route but /health needs `Authorization: Bearer <key>`
    # http(s) image URLs are fetched only under these prefixes (scheme://host[:port]/path); none by default
    allowed_image_url_prefixes: list[str] = []
    # a command line gives "429" as a string; a Literal of ints does not coerce it by itself
    overload_status: Annotated[Literal[503, 429], BeforeValidator(lambda v: int(v) if isinstance(v, str) else v)] = 503
    retry_after_s: int = Field(1, ge=0)
    batching: Batching = Batching()
    model: ModelReplicas = ModelReplicas()
    ingress: IngressReplicas = IngressReplicas()
    limits: Limits = Limits()

    _split = field_validator("allowed_image_url_prefixes", mode="before")(_split_commas)

    @field_validator("allowed_image_url_prefixes")
    @classmethod
    def _prefixes_are_urls(cls, prefixes: list[str]) -> list[str]:
        for prefix in prefixes:
            parts = urlsplit(prefix)
            _ = parts.port  # raises ValueError on a malformed port
            if parts.scheme not in ("http", "https") or not parts.hostname or not parts.path.endswith("/"):
                raise ValueError(f"{prefix!r}: an allowed prefix is scheme://host[:port]/path/ (http or https, "
                                 "ending with /)")
        return prefixes

    @model_validator(mode="before")
    @classmethod
    def _expand_dotted_keys(cls, data):
        """`{"limits.max_images": "2"}` (as `serve run ... limits.max_images=2` passes it) -> nested."""
        if not isinstance(data, dict) or not any("." in str(key) for key in data):
            return data
        out: dict = {}
        for key, value in data.items():
            *parents, leaf = str(key).split(".")
            node = out
            for part in parents:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise ValueError(f"{key!r}: {part!r} is a value, not a section")
            node[leaf] = value
        return out

    @model_validator(mode="after")
    def _batches_fit(self) -> "ServeArgs":
        if self.model.max_ongoing_requests < self.batching.max_batch_size:
            raise ValueError(f"model.max_ongoing_requests ({self.model.max_ongoing_requests}) is below "
                             f"batching.max_batch_size ({self.batching.max_batch_size}): batches could never fill")
        return self

    @property
    def served_name(self) -> str:
        return self.model_name or Path(self.model_path).name
