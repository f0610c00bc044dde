"""`cluster.yaml` passes Ray's own cluster-config validation (what `ray up` runs before it touches
AWS) and holds what the project needs: autoscaled A100 workers, the pinned Ray in the image, the
CUDA torch of the Makefile's version, a head that runs no GPU work. No Ray processes start here."""

from __future__ import annotations

import copy
import json
import re
import tomllib
from pathlib import Path

import jsonschema
import pytest
import ray
from ray.autoscaler._private.util import prepare_config, validate_config

from fake_autoscaler import FAKE_HEAD_TYPE, fake_autoscaling_config, gpu_node_types, load_cluster_config
from rlhfv_ray.config import load_config
from rlhfv_ray.training.sft import SFTConfig
from rlhfv_ray.training.train_ddpo import DDPOConfig

ROOT = Path(__file__).resolve().parents[1]
A100_INSTANCES = {"p4d.24xlarge": 8, "p4de.24xlarge": 8}  # AWS instance type -> A100 GPUs
IMAGE = re.compile(r"^rayproject/ray:(?P<version>\d+\.\d+\.\d+)-py(?P<python>\d{3,})(-(?P<flavor>gpu|cpu|cu\d+))?$")


@pytest.fixture(scope="module")
def cluster() -> dict:
    return load_cluster_config(ROOT / "cluster.yaml")


def ray_schema() -> dict:
    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def pinned_ray_version() -> str:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [d for d in deps if re.match(r"^ray(\[.*\])?==", d)]
    return pin.split("==")[1]


def makefile_torch_version() -> str:
    return re.search(r"^TORCH_SPEC \?= torch==(\S+)$", (ROOT / "Makefile").read_text(), re.M).group(1)


def test_cluster_yaml_passes_rays_validation(cluster):
    jsonschema.validate(cluster, ray_schema())  # the file as written, before Ray fills in defaults
    validate_config(prepare_config(copy.deepcopy(cluster)))  # what `ray up` validates


def test_validation_rejects_a_misspelt_field(cluster):
    """The check above has teeth: a typo that Ray would otherwise ignore is an error."""
    broken = copy.deepcopy(cluster)
    broken["idle_timeout_minute"] = broken.pop("idle_timeout_minutes")
    with pytest.raises(jsonschema.ValidationError, match="idle_timeout_minute"):
        validate_config(prepare_config(broken))


def test_a100_workers_autoscale_from_zero(cluster):
    (name, a100), = [(n, t) for n, t in gpu_node_types(cluster).items()
                     if t["node_config"]["InstanceType"] in A100_INSTANCES]
    gpus = A100_INSTANCES[a100["node_config"]["InstanceType"]]
    assert a100["resources"]["GPU"] == gpus
    assert a100["resources"]["accelerator_type:A100"] == 1  # serves accelerator_type="A100" requests
    assert a100["min_workers"] == 0  # no A100 node bills while nothing asks for GPUs
    assert 1 <= a100["max_workers"] <= cluster["max_workers"]
    assert cluster["idle_timeout_minutes"] > 0


def test_ray_image_is_the_pinned_ray_with_cuda(cluster):
    docker = cluster["docker"]
    images = [docker[key] for key in ("image", "head_image", "worker_image") if key in docker]
    assert images
    for image in images:
        match = IMAGE.match(image)
        assert match, f"{image} is not a rayproject/ray:<version>-py<nn>[-flavor] tag"
        assert match["version"] == pinned_ray_version()
        assert int(match["python"][1:]) >= 10  # py3XX; the project requires Python >= 3.10
    worker_image = IMAGE.match(docker.get("worker_image", docker["image"]))
    assert worker_image["flavor"] == "gpu" or worker_image["flavor"].startswith("cu")


def test_head_runs_no_gpu_work(cluster):
    head = cluster["available_node_types"][cluster["head_node_type"]]
    # 0 GPUs (and 0 CPUs) advertised: no Train worker, Serve replica or task is placed on the head.
    assert head["resources"].get("GPU") == 0 and head["resources"].get("CPU") == 0
    assert not re.match(r"^(p|g)\d", head["node_config"]["InstanceType"])  # and it is no GPU machine
    assert head.get("max_workers", 0) == 0


def test_setup_installs_the_project_with_cuda_torch(cluster):
    setup = cluster["setup_commands"]
    torch_installs = [c for c in setup if re.search(r"pip install .*torch==", c)]
    assert torch_installs and all(f"torch=={makefile_torch_version()}" in c for c in torch_installs)
    assert not any("whl/cpu" in c for c in torch_installs)  # the CUDA build, not the Makefile's CPU one
    (remote,) = [r for r, local in cluster["file_mounts"].items() if local == "."]  # the repository
    remote_home = remote.replace("~", "$HOME")
    assert any(re.search(rf'pip install .*-e "?{re.escape(remote_home)}"?$', c) for c in setup)
    # torch is installed before the project, so `torch>=2.4` does not pull a second build
    assert setup.index(torch_installs[0]) < max(i for i, c in enumerate(setup) if "-e" in c)
    assert ".venv" in cluster["rsync_exclude"]  # the local (CPU) venv is never shipped


@pytest.mark.parametrize("config_class, name, paths", [
    (SFTConfig, "sft_a100.yaml", ("model", "out")),
    (DDPOConfig, "train_a100.yaml", ("model", "shards", "out")),
    (DDPOConfig, "train_llava15_7b_a100x8.yaml", ("model", "shards", "out")),
    (DDPOConfig, "train_qwen25vl_7b_lora_1gpu.yaml", ("model", "shards", "out")),
])
def test_cluster_training_configs_fit_the_a100_nodes(cluster, config_class, name, paths):
    """configs/cluster/{sft,train}_a100.yaml load as their job's config and their scale fits cluster.yaml."""
    config = load_config(config_class, str(ROOT / "configs/cluster" / name), [])
    a100 = next(iter(gpu_node_types(cluster).values()))
    gpus_per_node = a100["resources"]["GPU"]
    assert config.scaling.use_gpu
    assert config.scaling.num_workers <= gpus_per_node * a100["max_workers"]
    assert config.scaling.cpus_per_worker * gpus_per_node <= a100["resources"]["CPU"]
    # checkpoints go to storage every node reaches: a URI (s3://...), not a node's local disk
    assert re.match(r"^[a-z0-9]+://", config.checkpoint.storage_path)
    for field in paths:
        assert getattr(config, field).startswith("/mnt/shared/")  # the shared mount of cluster.yaml
    assert any("/mnt/shared:/mnt/shared" in option for option in cluster["docker"]["run_options"])


def test_fake_autoscaling_config_mirrors_cluster_yaml(cluster):
    fake = fake_autoscaling_config(cluster, "127.0.0.1:6379", cpus_per_node=1, max_workers_per_type=2)
    jsonschema.validate(fake, ray_schema())
    workers = {name: t for name, t in fake["available_node_types"].items() if name != FAKE_HEAD_TYPE}
    assert set(workers) == set(gpu_node_types(cluster))
    for name, fake_type in workers.items():
        real = cluster["available_node_types"][name]["resources"]
        # GPUs and custom resources as declared (what scheduling depends on); CPUs shrunk
        assert {k: v for k, v in fake_type["resources"].items() if k not in ("CPU", "object_store_memory")} == \
               {k: v for k, v in real.items() if k != "CPU"}
        assert fake_type["resources"]["CPU"] == 1
        assert fake_type["min_workers"] == 0 and fake_type["max_workers"] == 2
    head = fake["available_node_types"][FAKE_HEAD_TYPE]["resources"]
    assert head["CPU"] == 0 and head["GPU"] == 0
    assert fake["provider"]["type"] == "fake_multinode" and fake["provider"]["gcs_address"] == "127.0.0.1:6379"


def test_cluster_serve_config_fits_the_a100_nodes(cluster):
    """configs/cluster/serve_a100.yaml is a Serve config `serve deploy` accepts, its args are the
    app's typed arguments, and its replicas fit (and can only grow onto) the A100 nodes."""
    import yaml
    from ray.serve.schema import ServeDeploySchema

    from serve_app.config import ServeArgs

    raw = yaml.safe_load((ROOT / "configs/cluster/serve_a100.yaml").read_text())
    (app,) = ServeDeploySchema.model_validate(raw).applications
    args = ServeArgs.model_validate(app.args)
    a100 = next(iter(gpu_node_types(cluster).values()))
    assert args.device == "cuda" and args.model.num_gpus >= 1  # a replica asks for a GPU: never the head
    assert args.model.max_replicas * args.model.num_gpus <= a100["resources"]["GPU"] * a100["max_workers"]
    assert args.model.num_cpus * a100["resources"]["GPU"] / args.model.num_gpus <= a100["resources"]["CPU"]
    assert args.model_path.startswith("/mnt/shared/")


def test_free_ports_are_distinct_and_bindable():
    import socket

    from loadgen import free_ports

    ports = free_ports(40)  # one node's ports: picked while all are held, so never the same twice
    assert len(set(ports)) == 40
    with socket.socket() as sock:
        sock.bind(("", ports[0]))  # released again once picked


@pytest.mark.parametrize("name, parameters, trained, lora", [
    ("train_llava15_7b_a100x8.yaml", 7.06e9, 6.76e9, False),  # LLaVA-1.5-7B, CLIP tower frozen
    ("train_qwen25vl_7b_lora_1gpu.yaml", 8.29e9, 40.4e6, True),  # Qwen2.5-VL-7B, rank-16 adapters
])
def test_the_7b_configs_fit_an_a100_with_room_for_activations(name, parameters, trained, lora):
    from rlhfv_ray.training.memory import estimate_gib

    config = load_config(DDPOConfig, str(ROOT / "configs/cluster" / name), [])
    assert (config.lora is not None) == lora and config.gradient_checkpointing
    state = estimate_gib(parameters, trained, config.scaling.num_workers, config.deepspeed.zero_stage, bf16=True)
    assert state["total"] < 20  # of an A100's 80 GiB: the rest is for activations
    assert f"= {state['total']:.1f} GiB" in (ROOT / "configs/cluster" / name).read_text()  # the comment is true
