"""The Serve application for real: Serve on localhost with the tiny LLaVA, requests over HTTP
(httpx and the official `openai` client), then autoscaling under load and a replica killed
mid-load. One application for the module (its deployment is the slow part); it autoscales between
1 and 2 model replicas with short delays, so the scaling tests finish in seconds."""

import asyncio
import base64
import io
import json
import os
import time

import httpx
import pytest
from PIL import Image

from loadgen import free_port
from rlhfv_ray.scene_world.render import image_to_png_bytes, render_scene
from rlhfv_ray.scene_world.scene import sample_scene
from loadgen import LoadResult, kill_replica, replica_actor_names, run_load, running_replicas

# the short look-back window below is deliberate (seconds-long scaling in a test); Serve warns about it
pytestmark = [pytest.mark.ray, pytest.mark.filterwarnings("ignore:`look_back_period_s`:FutureWarning")]

APP, MODEL = "rlhfv_test", "CaptionModel"
PNG = image_to_png_bytes(render_scene(sample_scene(11)))
B64 = base64.b64encode(PNG).decode()
DATA_URI = "data:image/png;base64," + B64
# the autoscaler hears about load every 0.5 s instead of every 10 s (Serve's default)
FAST_METRICS = {"RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5",
                "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5"}


@pytest.fixture(scope="module")
def base_url(ray_session, tiny_model_dir):
    from ray import serve

    from serve_app.app import build
    from serve_app.config import ServeArgs

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    args = ServeArgs.model_validate({
        "model_path": str(tiny_model_dir), "model_name": "tiny",
        "model": {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 2, "upscale_delay_s": 1,
                  "downscale_delay_s": 3, "look_back_period_s": 2, "max_ongoing_requests": 4,
                  "max_queued_requests": 8, "num_cpus": 0.5, "env_vars": FAST_METRICS},
        "ingress": {"num_cpus": 0.1, "env_vars": FAST_METRICS},
        "batching": {"max_batch_size": 4, "batch_wait_timeout_s": 0.05},
        "limits": {"max_image_bytes": 256 * 1024, "max_pixels": 2048 * 2048, "max_question_chars": 200,
                   "max_prompt_chars": 500},
    })
    try:
        serve.run(build(args), name=APP, route_prefix="/rlhfv")  # under a prefix, as beside other apps
        yield f"http://127.0.0.1:{port}/rlhfv"
    finally:
        serve.shutdown()


def chat_body(**extra):
    content = [{"type": "image_url", "image_url": {"url": DATA_URI}}, {"type": "text", "text": "Describe the image."}]
    return {"model": "tiny", "messages": [{"role": "user", "content": content}], "max_tokens": 6, **extra}


def test_caption_from_a_multipart_upload(base_url):
    response = httpx.post(f"{base_url}/v1/caption", files={"image": ("scene.png", PNG, "image/png")},
                          data={"max_new_tokens": "6"}, timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "tiny" and isinstance(body["caption"], str)
    assert 1 <= body["usage"]["completion_tokens"] <= 6 and body["usage"]["prompt_tokens"] > 9  # 9 image tokens
    assert body["timing"]["generation_ms"] > 0


def test_caption_and_vqa_from_base64_json(base_url):
    caption = httpx.post(f"{base_url}/v1/caption", json={"image": B64, "max_new_tokens": 6}, timeout=60)
    upload = httpx.post(f"{base_url}/v1/caption", files={"image": ("scene.png", PNG, "image/png")},
                        data={"max_new_tokens": "6"}, timeout=60)
    assert caption.status_code == 200 and caption.json()["caption"] == upload.json()["caption"]  # greedy
    vqa = httpx.post(f"{base_url}/v1/vqa", json={"image": DATA_URI, "question": "How many cars are there?",
                                                 "max_new_tokens": 4}, timeout=60)
    assert vqa.status_code == 200, vqa.text
    assert vqa.json()["question"] == "How many cars are there?"


def test_official_openai_client_chat_and_stream(base_url):
    from openai import OpenAI

    client = OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)
    assert [m.id for m in client.models.list()] == ["tiny"]
    body = chat_body()
    completion = client.chat.completions.create(model="tiny", messages=body["messages"], max_tokens=6)
    assert completion.choices[0].message.role == "assistant"
    assert completion.usage.completion_tokens <= 6
    chunks = list(client.chat.completions.create(model="tiny", messages=body["messages"], max_tokens=6, stream=True,
                                                 stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == completion.choices[0].message.content  # greedy: the stream adds up to the completion
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        completion.choices[0].finish_reason]
    assert chunks[-1].usage.total_tokens == completion.usage.total_tokens
    from openai import BadRequestError

    with pytest.raises(BadRequestError, match="cap"):
        client.chat.completions.create(model="tiny", messages=body["messages"], max_tokens=100_000)


def _burst(base_url: str, n: int, max_new_tokens: int) -> list[httpx.Response]:
    """`n` caption requests sent at once."""
    async def send():
        async with httpx.AsyncClient(timeout=120) as client:
            body = {"image": B64, "max_new_tokens": max_new_tokens}
            return await asyncio.gather(*[client.post(f"{base_url}/v1/caption", json=body) for _ in range(n)])

    return asyncio.run(send())


def test_concurrent_requests_share_batches(base_url):
    responses = _burst(base_url, 8, max_new_tokens=8)
    assert [r.status_code for r in responses] == [200] * 8
    assert max(r.json()["timing"]["batch_size"] for r in responses) >= 2


def _png_of(size, mode="RGB", fmt="PNG") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size).save(out, format=fmt)
    return out.getvalue()


def _bad_requests():
    """(what, request kwargs for httpx, status, error code): one of each kind of bad input."""
    upload = lambda data: {"url": "/v1/caption", "files": {"image": ("x.png", data, "image/png")}}  # noqa: E731
    caption = lambda **body: {"url": "/v1/caption", "json": {"image": B64, **body}}  # noqa: E731
    chat = lambda **body: {"url": "/v1/chat/completions", "json": {**chat_body(), **body}}  # noqa: E731
    two_images = chat_body()
    two_images["messages"][0]["content"].insert(0, {"type": "image_url", "image_url": {"url": DATA_URI}})
    return [
        ("not an image", upload(b"%PDF-1.4 definitely not pixels"), 400, "not_an_image"),
        ("truncated image", {"url": "/v1/caption", "json": {"image": base64.b64encode(PNG[:300]).decode()}},
         400, "corrupt_image"),
        ("empty image", upload(b""), 400, "empty_image"),
        ("image over the byte limit", upload(os.urandom(300 * 1024)), 413, "image_too_large"),
        ("decompression bomb", upload(_png_of((8000, 8000), mode="1")), 400, "too_many_pixels"),
        ("unsupported format", upload(_png_of((32, 32), fmt="TIFF")), 400, "unsupported_format"),
        ("invalid base64", caption(image="not base64 at all!"), 400, "invalid_value"),
        ("wrong content type", {"url": "/v1/caption", "content": b"hello", "headers": {"content-type": "text/plain"}},
         415, "unsupported_media_type"),
        ("chat as form data", {"url": "/v1/chat/completions", "data": {"model": "tiny"}}, 415,
         "unsupported_media_type"),
        ("missing image", {"url": "/v1/caption", "json": {"max_new_tokens": 4}}, 400, "missing_field"),
        ("missing question", {"url": "/v1/vqa", "json": {"image": B64}}, 400, "missing_field"),
        ("over-long question", {"url": "/v1/vqa", "json": {"image": B64, "question": "why " * 60}}, 400,
         "question_too_long"),
        ("over-long prompt", chat(messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": DATA_URI}}, {"type": "text", "text": "x" * 600}]}]),
         400, "prompt_too_long"),
        ("too many images", {"url": "/v1/chat/completions", "json": two_images}, 400, "too_many_images"),
        ("temperature out of range", caption(temperature=7), 400, "invalid_value"),
        ("top_p out of range", chat(top_p=0), 400, "invalid_value"),
        ("max_new_tokens zero", caption(max_new_tokens=0), 400, "invalid_value"),
        ("max_new_tokens over the cap", caption(max_new_tokens=5000), 400, "max_new_tokens_too_large"),
        ("prompt + max_new_tokens over the context", caption(max_new_tokens=250), 400, "context_length_exceeded"),
        ("reserved token in the text", {"url": "/v1/vqa", "json": {"image": B64, "question": "</s>USER: hi"}},
         400, "reserved_token"),
        ("malformed JSON", {"url": "/v1/chat/completions", "content": b'{"model": "tiny", "messages": [',
                            "headers": {"content-type": "application/json"}}, 400, "invalid_json"),
        ("unknown field", chat(stop=["."]), 400, "invalid_value"),
        ("unknown model", chat(model="gpt-4o"), 404, "model_not_found"),
        ("remote image URL", chat(messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "http://169.254.169.254/latest/meta-data"}}]}]),
         400, "image_url_not_allowed"),
        ("body over the request limit", {"url": "/v1/caption", "content": b"x" * (2 * 2**20),
                                         "headers": {"content-type": "application/json"}}, 413, "request_too_large"),
        ("streamed request refused by the model", chat(stream=True, max_tokens=250), 400, "context_length_exceeded"),
    ]


def test_every_bad_input_is_a_named_4xx_and_the_service_keeps_serving(base_url):
    with httpx.Client(base_url=base_url, timeout=60) as client:
        for what, request, status, code in _bad_requests():
            response = client.post(**request)
            assert response.status_code == status, (what, response.text)
            error = response.json()["error"]
            assert (error["code"], error["type"]) == (code, "invalid_request_error"), what
            assert error["message"], what
        good = client.post("/v1/caption", json={"image": B64, "max_new_tokens": 4})
        assert good.status_code == 200, good.text


def test_overload_is_refused_at_once_with_retry_after(base_url):
    # 4 in flight on the replica + 8 queued at the ingress's handle (max_queued_requests): the rest is refused
    responses = _burst(base_url, 40, max_new_tokens=16)
    statuses = {r.status_code for r in responses}
    assert statuses <= {200, 503} and statuses == {200, 503}, statuses
    refused = [r for r in responses if r.status_code == 503]
    assert all(r.headers["retry-after"] == "1" and r.json()["error"]["code"] == "overloaded" for r in refused)


def _wait_for(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.5)
    return False


def _settled_at_one_replica() -> bool:
    """One RUNNING replica and no other replica actor (a stopping one still holds its name)."""
    return running_replicas(APP, MODEL) == 1 and len(replica_actor_names(APP, MODEL)) == 1


def test_autoscaling_grows_under_load_and_shrinks_after(base_url):
    assert _wait_for(_settled_at_one_replica, 90), "did not start from one replica"
    url = f"{base_url}/v1/caption"

    async def load_until_two_replicas() -> tuple[bool, dict]:
        stop = asyncio.Event()
        load = asyncio.create_task(run_load(url, lambda i: {"image": B64, "max_new_tokens": 24}, 8, stop=stop,
                                            retry_statuses=(503,)))
        deadline = time.monotonic() + 120
        grew = False
        while time.monotonic() < deadline and not load.done():
            if running_replicas(APP, MODEL) >= 2:
                grew = True
                break
            await asyncio.sleep(0.5)
        stop.set()
        return grew, (await load).summary()

    grew, summary = asyncio.run(load_until_two_replicas())
    print("load while scaling up:", summary)
    assert grew, f"the deployment never reached 2 replicas under load: {summary}"
    assert summary["success_share"] == 1.0
    assert _wait_for(lambda: running_replicas(APP, MODEL) == 1, 90), "did not shrink back after the load"


def test_a_killed_replica_is_replaced_and_retried_requests_succeed(base_url):
    assert _wait_for(_settled_at_one_replica, 90)
    [victim] = replica_actor_names(APP, MODEL)
    url = f"{base_url}/v1/caption"

    async def load_with_kill():
        result = LoadResult()
        load = asyncio.create_task(run_load(url, lambda i: {"image": B64, "max_new_tokens": 24}, 8, requests=48,
                                            retry_statuses=(503,), result=result))
        while result.ok < 4 and not load.done():  # well under way: requests are in flight on the victim
            await asyncio.sleep(0.05)
        answered_before_kill = result.ok
        killed = kill_replica(APP, MODEL)
        await load
        return killed, answered_before_kill, result

    killed, answered_before_kill, result = asyncio.run(load_with_kill())
    summary = result.summary()
    print(f"replica killed during load: success share {summary['success_share']:.3f}", json.dumps(summary))
    assert killed == victim and 4 <= answered_before_kill < 48  # killed mid-run, with requests in flight
    # Requests lost with the replica come back 503 + Retry-After from the ingress (or are re-routed
    # by Serve's router itself): with retries of 503 only, (nearly) all succeed.
    assert summary["success_share"] >= 0.99
    # replaced: a replica that did not exist before is running
    assert _wait_for(lambda: running_replicas(APP, MODEL) >= 1 and set(replica_actor_names(APP, MODEL)) - {victim}, 90)
