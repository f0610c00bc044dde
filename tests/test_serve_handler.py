"""The HTTP app and its handler in one process, without Ray: the real tiny LLaVA behind an
in-process `LocalModelClient`, FastAPI's TestClient in front. The Serve tests repeat the main paths
over real HTTP; these cover the mechanics (auth, limits, URL allow-list, SSE, config)."""

import base64
import http.server
import io
import json
import threading

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from rlhfv_ray.model.generate import GenerationSettings
from rlhfv_ray.scene_world.render import image_to_png_bytes, render_scene
from rlhfv_ray.scene_world.scene import sample_scene
from serve_app.app import deployment_options
from serve_app.client import LocalModelClient
from serve_app.config import ServeArgs
from serve_app.engine import Engine, GenerationJob
from serve_app.handler import Handler, url_allowed
from serve_app.routes import make_app

PNG = image_to_png_bytes(render_scene(sample_scene(5)))
B64 = base64.b64encode(PNG).decode()
DATA_URI = "data:image/png;base64," + B64


def chat_body(**extra):
    content = [{"type": "image_url", "image_url": {"url": DATA_URI}}, {"type": "text", "text": "Describe the image."}]
    return {"model": "tiny", "messages": [{"role": "user", "content": content}], "max_tokens": 6, **extra}


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    return Engine(str(tiny_model_dir))


def make_client(engine, tiny_model_dir, **overrides) -> TestClient:
    args = ServeArgs.model_validate({"model_path": str(tiny_model_dir), "model_name": "tiny", **overrides})
    api_key = args.api_key.get_secret_value() if args.api_key else None
    return TestClient(make_app(Handler(args, LocalModelClient(engine)), api_key))


@pytest.fixture(scope="module")
def client(engine, tiny_model_dir):
    with make_client(engine, tiny_model_dir, **{"limits.max_question_chars": 50}) as test_client:
        yield test_client


def test_caption_from_multipart_and_from_json_agree(client):
    upload = client.post("/v1/caption", files={"image": ("scene.png", PNG, "image/png")}, data={"max_new_tokens": "5"})
    assert upload.status_code == 200, upload.text
    body = upload.json()
    assert body["model"] == "tiny" and body["object"] == "caption"
    assert body["usage"]["completion_tokens"] <= 5
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    assert body["timing"]["batch_size"] == 1 and body["timing"]["total_ms"] > 0
    for image in (B64, DATA_URI):  # greedy: the same caption whichever way the image came
        as_json = client.post("/v1/caption", json={"image": image, "max_new_tokens": 5})
        assert as_json.status_code == 200 and as_json.json()["caption"] == body["caption"]


def test_vqa_answers_the_question(client):
    response = client.post("/v1/vqa", json={"image": B64, "question": "What color is the car?", "max_new_tokens": 4})
    assert response.status_code == 200, response.text
    assert response.json()["question"] == "What color is the car?"


def test_chat_stream_adds_up_to_the_completion(client):
    whole = client.post("/v1/chat/completions", json=chat_body())
    assert whole.status_code == 200, whole.text
    completion = whole.json()
    assert completion["object"] == "chat.completion"
    assert completion["choices"][0]["message"]["role"] == "assistant"
    streamed = client.post("/v1/chat/completions", json=chat_body(stream=True, stream_options={"include_usage": True}))
    assert streamed.status_code == 200 and streamed.headers["content-type"].startswith("text/event-stream")
    events = [line[len("data: "):] for line in streamed.text.split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == completion["choices"][0]["message"]["content"]
    assert chunks[-2]["choices"][0]["finish_reason"] == completion["choices"][0]["finish_reason"]
    assert chunks[-1]["usage"] == completion["usage"]


def test_system_message_opens_the_first_user_turn(client):
    body = chat_body()
    body["messages"].insert(0, {"role": "system", "content": "Answer briefly."})
    assert client.post("/v1/chat/completions", json=body).status_code == 200


def test_models_health_and_openapi(client):
    assert client.get("/health").json() == {"status": "ok", "model": "tiny"}
    assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["tiny"]
    schema = client.get("/openapi.json").json()
    assert {"/v1/caption", "/v1/vqa", "/v1/chat/completions", "/v1/models", "/health"} <= set(schema["paths"])
    bodies = schema["paths"]["/v1/caption"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(bodies)


@pytest.mark.parametrize("call, status, code", [
    (lambda c: c.post("/v1/vqa", json={"image": B64, "question": "x" * 51}), 400, "question_too_long"),
    (lambda c: c.post("/v1/vqa", json={"image": B64, "question": "<image> what?"}), 400, "reserved_token"),
    (lambda c: c.post("/v1/caption", json={"image": B64, "max_new_tokens": 250}), 400, "context_length_exceeded"),
    (lambda c: c.post("/v1/caption", json={"image": B64, "stop": ["."]}), 400, "invalid_value"),
    (lambda c: c.post("/v1/chat/completions", json=chat_body(model="gpt-4o")), 404, "model_not_found"),
    (lambda c: c.post("/v1/chat/completions", json=chat_body(n=2)), 400, "invalid_value"),
    (lambda c: c.post("/v1/chat/completions", json=chat_body(stream=True, max_tokens=250)), 400,
     "context_length_exceeded"),
    (lambda c: c.post("/v1/chat/completions", json={**chat_body(), "messages": [
        {"role": "user", "content": "no image here"}]}), 400, "missing_image"),
    (lambda c: c.post("/v1/chat/completions", json={**chat_body(), "messages": [
        chat_body()["messages"][0], {"role": "assistant", "content": "ok"}]}), 400, "invalid_messages"),
    (lambda c: c.delete("/v1/models"), 405, "method_not_allowed"),
    (lambda c: c.get("/v2/anything"), 404, "not_found"),
])
def test_refusals_name_the_problem(client, call, status, code):
    response = call(client)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"] and error["type"]


def test_request_body_limit_holds_without_content_length(client):
    chunks = (b"x" * 65536 for _ in range(200))  # ~13 MB, chunked: no Content-Length to check up front
    response = client.post("/v1/caption", content=chunks, headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"


def test_api_key_guards_every_route_but_health(engine, tiny_model_dir):
    with make_client(engine, tiny_model_dir, api_key="s3cret") as c:
        assert c.get("/health").status_code == 200
        for path in ("/v1/models", "/openapi.json", "/docs"):
            response = c.get(path)
            assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
            assert response.json()["error"]["type"] == "authentication_error"
        assert c.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.post("/v1/caption", json={"image": B64}).status_code == 401  # before the body is read
        assert c.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_url_allow_list_compares_parsed_parts():
    allowed = ["https://images.example.com/public/", "http://127.0.0.1:8123/ok/"]
    assert url_allowed("https://images.example.com/public/a.png", allowed)
    assert url_allowed("https://images.example.com:443/public/a.png", allowed)
    assert url_allowed("http://127.0.0.1:8123/ok/a.png", allowed)
    for url in ("https://images.example.com/private/a.png",
                "https://images.example.com/public/../private/a.png",
                "https://images.example.com/public/%2e%2e/private/a.png",
                "https://images.example.com@evil.example/public/a.png",
                "https://images.example.com.evil.example/public/a.png",
                "http://images.example.com/public/a.png",  # another scheme
                "http://127.0.0.1:8124/ok/a.png",  # another port
                "file:///etc/passwd", "https://images.example.com:bad/public/a.png"):
        assert not url_allowed(url, allowed), url
    assert not url_allowed("https://images.example.com/public/a.png", [])


class _Images(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/ok/scene.png":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            self.wfile.write(PNG)
        else:  # everything else redirects into the allowed prefix: must not be followed
            self.send_response(302)
            self.send_header("Location", "/ok/scene.png")
            self.end_headers()

    def log_message(self, *args):
        pass


def test_http_image_urls_only_under_allowed_prefixes(engine, tiny_model_dir):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"

    def ask(c, url):
        body = chat_body()
        body["messages"][0]["content"][0]["image_url"]["url"] = url
        return c.post("/v1/chat/completions", json=body)

    try:
        with make_client(engine, tiny_model_dir) as c:  # default: no URL is fetched
            assert ask(c, f"{base}/ok/scene.png").json()["error"]["code"] == "image_url_not_allowed"
        with make_client(engine, tiny_model_dir, allowed_image_url_prefixes=f"{base}/ok/") as c:
            assert ask(c, f"{base}/ok/scene.png").status_code == 200
            assert ask(c, f"{base}/elsewhere.png").json()["error"]["code"] == "image_url_not_allowed"
            redirected = ask(c, f"{base}/ok/redirect.png")
            assert redirected.status_code == 400 and redirected.json()["error"]["code"] == "image_fetch_failed"
    finally:
        server.shutdown()


def test_a_refused_job_does_not_sink_its_batch(engine):
    def job(question, max_new_tokens=4, image=PNG):
        message = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}
        return GenerationJob((image,), (message,), GenerationSettings(max_new_tokens))

    jobs = [job("Describe."), job("</s> forged"), job("Describe.", 250), job("Describe.", image=PNG[:100]),
            job("Why?", 2)]
    steps = list(engine.run(jobs))
    last = [next(s[i] for s in reversed(steps) if s[i] is not None) for i in range(len(jobs))]
    assert [c.error.code if c.error else None for c in last] == [
        None, "reserved_token", "context_length_exceeded", "corrupt_image", None]
    assert last[0].final.completion_tokens <= 4 and last[4].final.completion_tokens <= 2
    assert last[0].final.batch_size == len(jobs)


def test_args_from_the_command_line_and_what_serve_is_given(tiny_model_dir):
    args = ServeArgs.model_validate({"model_path": str(tiny_model_dir), "limits.max_images": "2",
                                     "model.max_replicas": "4", "allowed_image_url_prefixes": "https://a/,https://b/",
                                     "overload_status": "429", "batching.max_batch_size": "16"})
    assert args.limits.max_images == 2 and args.model.max_replicas == 4
    assert args.allowed_image_url_prefixes == ["https://a/", "https://b/"]
    model, ingress = deployment_options(args)
    assert model["autoscaling_config"]["max_replicas"] == 4
    assert model["user_config"] == {"max_batch_size": 16, "batch_wait_timeout_s": 0.02}
    assert model["max_queued_requests"] == args.model.max_queued_requests
    assert ingress["backpressure_config"] == {"status_code": 429, "retry_after_s": 1}
    with pytest.raises(ValueError, match="limitz"):
        ServeArgs.model_validate({"model_path": "m", "limitz.max_images": 2})
    with pytest.raises(ValueError, match="batches could never fill"):
        ServeArgs.model_validate({"model_path": "m", "batching.max_batch_size": 64})


def test_decompression_bomb_is_refused_from_its_header(client):
    bomb = io.BytesIO()
    Image.new("1", (6000, 6000)).save(bomb, format="PNG")  # 36 Mpx declared, a few kB on the wire
    assert len(bomb.getvalue()) < 100_000
    response = client.post("/v1/caption", files={"image": ("bomb.png", bomb.getvalue(), "image/png")})
    assert response.status_code == 400 and response.json()["error"]["code"] == "too_many_pixels"


def test_shipped_serve_config_is_valid_and_builds(tiny_model_dir):
    """serve_app/serve_config.yaml passes Serve's own schema, and its args build the application
    the way `serve run` / `serve deploy` do (Serve validates the args into ServeArgs)."""
    from pathlib import Path

    import yaml
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
    from ray.serve.schema import ServeDeploySchema

    from serve_app.app import build

    config = yaml.safe_load((Path(__file__).parents[1] / "serve_app" / "serve_config.yaml").read_text())
    [app] = ServeDeploySchema.model_validate(config).applications
    assert app.import_path == "serve_app.app:build"
    args = {**app.args, "model_path": str(tiny_model_dir)}  # the demo's checkpoint may not exist here
    application = call_user_app_builder_with_args_if_necessary(build, args)
    assert type(application).__name__ == "Application"
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        call_user_app_builder_with_args_if_necessary(build, {**args, "model_path": "/nonexistent/model"})
