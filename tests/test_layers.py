"""The layers: the generic core loads nothing of the scene world, data loads nothing of training,
and the installed packages hold no test scaffolding."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GENERIC_ENTRY_POINTS = [
    "rlhfv_ray.cli", "rlhfv_ray.data.pipeline", "rlhfv_ray.data.feedback", "rlhfv_ray.data.merge",
    "rlhfv_ray.data.conversations", "rlhfv_ray.data.annotators", "rlhfv_ray.model.pair_forward",
    "rlhfv_ray.model.generate", "rlhfv_ray.model.streaming", "rlhfv_ray.training.sft",
    "rlhfv_ray.training.train_ddpo", "rlhfv_ray.training.loop", "rlhfv_ray.eval.benchmark",
    "rlhfv_ray.eval.coco", "rlhfv_ray.eval.report", "serve_app.app",
]


def _loaded_after(code: str) -> list[str]:
    """The rlhfv_ray / serve_app modules a fresh interpreter has loaded after running `code`."""
    script = code + "\nimport json, sys\nprint(json.dumps(sorted(m for m in sys.modules " \
                    "if m.split('.')[0] in ('rlhfv_ray', 'serve_app'))))"
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_generic_entry_points_load_no_scene_world_module():
    loaded = _loaded_after("\n".join(f"import {module}" for module in GENERIC_ENTRY_POINTS))
    assert set(GENERIC_ENTRY_POINTS) <= set(loaded)
    assert not [m for m in loaded if m.startswith("rlhfv_ray.scene_world")], loaded


def test_generic_configs_with_their_default_plugins_load_no_scene_world_module():
    loaded = _loaded_after(
        "from rlhfv_ray.data.feedback import FeedbackConfig\n"
        "FeedbackConfig(model='m', prompts='p.parquet', out='o')\n"
        "from rlhfv_ray.eval.benchmark import EvaluateConfig\n"
        "EvaluateConfig(model='m', out='o.json', benchmark='coco', settings={'annotations': 'a', 'images': 'i'})\n"
        "from rlhfv_ray.cli import _parser\n_parser('sft')")
    assert "rlhfv_ray.data.annotators" in loaded and "rlhfv_ray.eval.coco" in loaded
    assert not [m for m in loaded if m.startswith("rlhfv_ray.scene_world")], loaded


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package, forbidden", [
    ("rlhfv_ray/data", ("rlhfv_ray.training", "rlhfv_ray.scene_world", "rlhfv_ray.eval")),
    ("rlhfv_ray/model", ("rlhfv_ray.training", "rlhfv_ray.data", "rlhfv_ray.scene_world", "rlhfv_ray.eval")),
    ("rlhfv_ray/training", ("rlhfv_ray.scene_world", "rlhfv_ray.eval")),
    ("rlhfv_ray/eval", ("rlhfv_ray.scene_world", "rlhfv_ray.training")),
    ("serve_app", ("rlhfv_ray.scene_world", "rlhfv_ray.training", "rlhfv_ray.data")),
])
def test_imports_point_one_way(package, forbidden):
    offenders = {str(f.relative_to(ROOT)): sorted(m for m in _imports(f) if m.startswith(forbidden))
                 for f in (ROOT / package).rglob("*.py")}
    assert not {f: m for f, m in offenders.items() if m}


def test_installed_packages_hold_no_test_scaffolding():
    for package in ("rlhfv_ray", "serve_app"):
        for path in (ROOT / package).rglob("*.py"):
            imported = _imports(path)
            assert not imported & {"pytest", "local_cluster", "loadgen", "fake_autoscaler"}, path
