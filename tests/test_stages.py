"""Stage reuse: a stage is skipped only for the same config and the same runs of its inputs."""

import time

from pydantic import BaseModel

from rlhfv_ray.stages import recorded_seconds, run_stage


class _Config(BaseModel):
    model: str
    steps: int = 1


def test_stage_reruns_when_config_or_an_upstream_run_changes(tmp_path):
    runs = []
    train_out, eval_out = tmp_path / "model", tmp_path / "eval"

    def train(steps: int):
        return run_stage("train", _Config(model="base", steps=steps), train_out, lambda: runs.append("train"),
                         reuse=True, log=lambda *_: None)

    def evaluate():
        return run_stage("evaluate", _Config(model=str(train_out)), eval_out, lambda: runs.append("eval"),
                         reuse=True, log=lambda *_: None, upstream=[train_out])

    train(1), evaluate()
    train(1), evaluate()  # nothing changed: both reused
    assert runs == ["train", "eval"]
    train(2), evaluate()  # the model at the same path was retrained: its evaluation is stale
    assert runs == ["train", "eval", "train", "eval"]
    evaluate()
    assert runs[-1] == "eval" and len(runs) == 4


def test_reused_stage_reports_zero_seconds_and_failed_stage_is_not_marked(tmp_path):
    config = _Config(model="m")
    _, seconds = run_stage("s", config, tmp_path, lambda: time.sleep(0.01), reuse=True, log=lambda *_: None)
    assert seconds >= 0.01
    assert run_stage("s", config, tmp_path, lambda: None, reuse=True, log=lambda *_: None) == (None, 0.0)
    assert recorded_seconds(tmp_path) == seconds  # what it took when it ran, kept for later runs

    def crash():
        raise RuntimeError("boom")

    other = tmp_path / "other"
    try:
        run_stage("s", config, other, crash, reuse=True, log=lambda *_: None)
    except RuntimeError:
        pass
    ran = []
    run_stage("s", config, other, lambda: ran.append(1), reuse=True, log=lambda *_: None)
    assert ran == [1]
