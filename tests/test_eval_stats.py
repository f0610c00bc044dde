"""Sampling-error helpers of the benchmark, against values derived by hand."""

import pytest

from rlhfv_ray.eval.stats import mcnemar_exact_p, paired_rate_difference, wilson_interval


def test_wilson_interval_by_hand():
    # z^2 = 3.8415; 0/10: centre = half = (z^2/20) / (1 + z^2/10) = 0.19207 / 1.38415 = 0.13877
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.27753), abs=1e-5)
    # 5/10: centre 0.5, half = z * sqrt(0.025 + z^2/400) / 1.38415 = 0.26341
    assert wilson_interval(5, 10) == pytest.approx((0.23659, 0.76341), abs=1e-5)
    assert wilson_interval(10, 10) == pytest.approx((0.72247, 1.0), abs=1e-5)  # mirror of 0/10
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(11, 10)


def test_mcnemar_exact_by_hand():
    assert mcnemar_exact_p(1, 4) == pytest.approx(2 * (1 + 5) / 32)  # 0.375
    assert mcnemar_exact_p(0, 6) == pytest.approx(2 / 64)
    assert mcnemar_exact_p(3, 3) == 1.0  # the two tails overlap: capped
    assert mcnemar_exact_p(0, 0) == 1.0


def test_paired_rate_difference_by_hand():
    a = [1, 1, 0, 0, 1]
    b = [0, 1, 0, 1, 0]
    d = paired_rate_difference(a, b)
    assert (d.n, d.only_a, d.only_b) == (5, 2, 1)
    assert (d.rate_a, d.rate_b, d.difference) == pytest.approx((0.6, 0.4, -0.2))
    # var of mean d: (3/5 - 0.04) / 5 = 0.112; half = 1.95996 * 0.334664 = 0.655929
    assert d.ci95 == pytest.approx((-0.855929, 0.455929), abs=1e-5)
    assert d.mcnemar_p == pytest.approx(1.0)  # 2 * (1 + 3) / 8
    same = paired_rate_difference([1, 0, 1], [1, 0, 1])
    assert same.difference == 0 and same.ci95 == (0.0, 0.0) and same.mcnemar_p == 1.0
    with pytest.raises(ValueError, match="equally long"):
        paired_rate_difference([1], [1, 0])


def _write_responses(path, outcomes):
    """A benchmark's responses file: one caption record per (seed, types) plus a VQA record."""
    import json

    lines = [{"id": seed, "task": "caption", "hallucinated": bool(types), "types": types}
             for seed, types in outcomes]
    lines.append({"id": "0:q", "task": "vqa", "correct": True})
    path.with_suffix(".responses.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return path


def test_compare_responses_pairs_scenes_by_seed(tmp_path):
    from rlhfv_ray.eval.benchmark import compare_responses

    base = _write_responses(tmp_path / "base.json", [(1, ["number"]), (2, []), (3, ["object", "number"])])
    # written in another order: pairing is by seed, not by line
    tuned = _write_responses(tmp_path / "tuned.json", [(3, ["number"]), (2, ["position"]), (1, [])])
    c = compare_responses(base, tuned)
    assert (c["response_hallucination_rate"]["only_a"], c["response_hallucination_rate"]["only_b"]) == (1, 1)
    assert c["response_hallucination_rate"]["difference"] == 0.0
    assert c["object"]["difference"] == pytest.approx(-1 / 3)
    assert c["number"]["difference"] == pytest.approx(-1 / 3)
    assert c["position"]["difference"] == pytest.approx(1 / 3)
    other = _write_responses(tmp_path / "other.json", [(1, []), (2, [])])
    with pytest.raises(ValueError, match="same images"):
        compare_responses(base, other)


def test_tables_show_intervals_and_paired_differences():
    from rlhfv_ray.eval.report import markdown_table, paired_table

    diff = paired_rate_difference([1, 1, 0, 0, 1], [0, 1, 0, 1, 0]).to_dict()
    table = paired_table({"tuned - base": {k: diff for k in
                                           ["response_hallucination_rate", "object", "attribute", "number", "position"]}})
    assert "| tuned - base | -0.200 [-0.856, +0.456] p=1 |" in table
    # a type only one comparison's models made (a scene-type error in the first)
    table = paired_table({"a": {"response_hallucination_rate": diff, "scene": diff},
                          "b": {"response_hallucination_rate": diff}})
    assert table.splitlines()[-1] == "| b | -0.200 [-0.856, +0.456] p=1 | none in either |"
    # a report from before the intervals existed still renders (a dash where the key is missing)
    old = {"response_hallucination_rate": 0.5, "mention_hallucination_rate": 0.1, "object_recall": 0.9,
           "hallucination_by_type": {t: 0.0 for t in ["object", "attribute", "number", "position"]},
           "vqa_accuracy": 0.7, "overgeneralization_delta_mean": 0.0, "mean_response_words": 20.0,
           "unparsed_responses": 0, "n_responses": 10}
    new = {**old, "ci95": {"response_hallucination_rate": (0.25, 0.75), "vqa_accuracy": (0.4, 0.9)}}
    rows = markdown_table({"old": old, "new": new}).splitlines()
    assert "|   95% interval | – | [0.250, 0.750] |" in rows


def test_evaluate_checkpoint_writes_intervals_and_comparable_responses(tiny_model_dir, tmp_path):
    """The benchmark on a real (untrained) checkpoint: intervals in the JSON, responses beside it
    that `compare_responses` pairs with themselves to a zero difference."""
    import json

    from rlhfv_ray.eval.benchmark import EvaluateConfig, compare_responses, evaluate_checkpoint

    out = tmp_path / "eval" / "tiny.json"
    config = EvaluateConfig(model=str(tiny_model_dir), out=str(out), benchmark="scene",
                            settings={"scenes": 6, "vqa_per_scene": 1, "max_new_tokens": 8})
    metrics = evaluate_checkpoint(config)
    assert json.loads(out.read_text())["ci95"] == json.loads(json.dumps(metrics["ci95"]))
    low, high = metrics["ci95"]["response_hallucination_rate"]
    assert 0.0 <= low <= metrics["response_hallucination_rate"] <= high <= 1.0
    assert "95% interval" in out.with_suffix(".md").read_text()
    same = compare_responses(out, out)
    assert same["response_hallucination_rate"]["n"] == 6
    assert same["response_hallucination_rate"]["difference"] == 0.0


def test_unknown_benchmarks_and_settings_are_refused_with_the_key_named():
    from rlhfv_ray.eval.benchmark import EvaluateConfig

    with pytest.raises(ValueError, match="unknown benchmark 'nope'.*coco.*scene"):
        EvaluateConfig(model="m", out="o.json", benchmark="nope")
    with pytest.raises(ValueError, match="settings.scenez"):
        EvaluateConfig(model="m", out="o.json", benchmark="scene", settings={"scenez": 3})
    with pytest.raises(ValueError, match="settings.annotations"):
        EvaluateConfig(model="m", out="o.json", benchmark="coco", settings={"images": "x"})
