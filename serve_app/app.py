"""The Serve application: an HTTP ingress in front of autoscaling model replicas.

    serve run serve_app.app:build model_path=runs/demo/ddpo_model
    serve run serve_app/serve_config.yaml        # or: serve deploy serve_app/serve_config.yaml

`build(args)` takes the typed `ServeArgs` (Serve validates the `args` mapping into it) and binds
two deployments: `Ingress` (FastAPI; parses, checks limits, awaits the model) and `CaptionModel`
(the checkpoint, `@serve.batch`, autoscaling on ongoing requests). The ingress is light and the
model heavy, so they scale apart; overload is refused at the ingress's handle to the model
(`max_queued_requests`) with 503/429 and Retry-After instead of a growing queue.
"""

# No `from __future__ import annotations` here: Serve reads build's annotation at run time and
# validates the `args` mapping into ServeArgs only when it is the class itself, not a string.
from pathlib import Path

from ray import serve
from ray.serve.handle import DeploymentHandle

from serve_app.client import ServeModelClient
from serve_app.config import ServeArgs
from serve_app.handler import Handler
from serve_app.model import CaptionModel
from serve_app.routes import make_app


@serve.deployment(name="Ingress")
@serve.ingress()  # the FastAPI app is built per replica by __serve_build_asgi_app__, from the args
class Ingress:
    def __init__(self, args: ServeArgs, model: DeploymentHandle):
        self.args = args
        self.handler = Handler(args, ServeModelClient(model, args.overload_status, args.retry_after_s))

    def __serve_build_asgi_app__(self):
        api_key = self.args.api_key.get_secret_value() if self.args.api_key else None
        return make_app(self.handler, api_key)


def _runtime_env(env_vars: dict[str, str]) -> dict:
    return {"runtime_env": {"env_vars": env_vars}} if env_vars else {}


def deployment_options(args: ServeArgs) -> tuple[dict, dict]:
    """(model options, ingress options) for `Deployment.options`: kept apart from `build` so a
    test can read exactly what Serve is given."""
    m = args.model
    model = dict(
        autoscaling_config=dict(min_replicas=m.min_replicas, max_replicas=m.max_replicas,
                                initial_replicas=m.initial_replicas, target_ongoing_requests=m.target_ongoing_requests,
                                upscale_delay_s=m.upscale_delay_s, downscale_delay_s=m.downscale_delay_s,
                                look_back_period_s=m.look_back_period_s),
        max_ongoing_requests=m.max_ongoing_requests,
        max_queued_requests=m.max_queued_requests,
        ray_actor_options={"num_cpus": m.num_cpus, "num_gpus": m.num_gpus, **_runtime_env(m.env_vars)},
        health_check_period_s=m.health_check_period_s,
        health_check_timeout_s=m.health_check_timeout_s,
        user_config=args.batching.model_dump(),
    )
    i = args.ingress
    ingress = dict(
        num_replicas=i.num_replicas,
        max_ongoing_requests=i.max_ongoing_requests,
        max_queued_requests=i.max_queued_requests,
        backpressure_config={"status_code": args.overload_status, "retry_after_s": args.retry_after_s},
        ray_actor_options={"num_cpus": i.num_cpus, **_runtime_env(i.env_vars)},
    )
    return model, ingress


def build(args: ServeArgs) -> serve.Application:
    args = ServeArgs.model_validate(args)  # a plain dict when called from Python
    model_dir = Path(args.model_path).expanduser()
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"model_path {args.model_path!r} is not a save_pretrained directory "
                                f"(no config.json); resolved from {Path.cwd()}")
    # replicas may start elsewhere (another working directory, another node of the same shared
    # filesystem): hand them an absolute path
    resolved = model_dir.resolve()
    args = args.model_copy(update={"model_path": str(resolved), "model_name": args.model_name or resolved.name})
    model_options, ingress_options = deployment_options(args)
    model = CaptionModel.options(**model_options).bind(args.model_path, args.limits, args.device, args.dtype,
                                                        args.torch_threads)
    return Ingress.options(**ingress_options).bind(args, model)
