"""Benchmark reports: a Markdown table and a PNG chart comparing one or more models."""

from __future__ import annotations

from pathlib import Path

from rlhfv_ray.eval.benchmark import type_order


def hallucination_types(results: dict[str, dict]) -> list[str]:
    """The hallucination types any of the reports measures, in the paper's order."""
    kinds = {k for m in results.values() for k in (m.get("hallucination_by_type") or {})}
    return sorted(kinds, key=type_order)


def _rows(results: dict[str, dict]) -> list[tuple[str, str, bool | None]]:
    """(label, key, lower is better?) of the table's rows, in order; a row no report has is left out."""
    rows = [
        ("response hallucination rate", "response_hallucination_rate", True),
        ("  95% interval", "ci95.response_hallucination_rate", None),
        ("mention hallucination rate (CHAIR_i)", "mention_hallucination_rate", True),
        *((f"  {t} hallucination (response-level)", f"hallucination_by_type.{t}", True)
          for t in hallucination_types(results)),
        ("object recall", "object_recall", False),
        ("VQA accuracy", "vqa_accuracy", False),
        ("  95% interval", "ci95.vqa_accuracy", None),
        ("POPE accuracy (mean of settings)", "pope_accuracy", False),
        *((f"  POPE {s} F1", f"pope.{s}.f1", False) for s in ("random", "popular", "adversarial")),
        ("over-generalization delta (mean)", "overgeneralization_delta_mean", True),
        ("mean response words", "mean_response_words", None),
        ("unparsed responses", "unparsed_responses", True),
        ("responses", "n_responses", None),
    ]
    return [row for row in rows if any(_lookup(m, row[1]) is not None for m in results.values())]


def _lookup(metrics: dict, dotted: str):
    """The value at a dotted key; None where a report predates the key (e.g. no ci95)."""
    value = metrics
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def markdown_table(results: dict[str, dict]) -> str:
    """Rows are metrics, columns the models of `results` (name -> metrics), in insertion order."""
    names = list(results)
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for label, key, lower_better in _rows(results):
        arrow = "" if lower_better is None else (" ↓" if lower_better else " ↑")
        cells = [_fmt(_lookup(results[n], key)) for n in names]
        lines.append(f"| {label}{arrow} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def paired_table(comparisons: dict[str, dict]) -> str:
    """Markdown rows of paired comparisons (name -> `benchmark.compare_responses` output): the
    difference of each response-level rate with its 95% interval and McNemar p-value. A type that
    neither model of a comparison made on any scene is absent from it: "none in either"."""
    kinds = list(dict.fromkeys(k for comparison in comparisons.values() for k in comparison))
    lines = ["| paired (same scenes) | " + " | ".join(k.replace("_hallucination_rate", "") for k in kinds) + " |",
             "|---|" + "---|" * len(kinds)]
    for name, comparison in comparisons.items():
        cells = [f"{c['difference']:+.3f} [{c['ci95'][0]:+.3f}, {c['ci95'][1]:+.3f}] p={c['mcnemar_p']:.2g}"
                 if c else "none in either" for c in (comparison.get(k) for k in kinds)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_metrics(results: dict[str, dict], path: str | Path) -> None:
    """Grouped bars of the rates (hallucination by type, recall, VQA) per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    candidates = [("response_hallucination_rate", "response"), ("mention_hallucination_rate", "mention"),
                  *((f"hallucination_by_type.{t}", t) for t in hallucination_types(results)),
                  ("object_recall", "recall"), ("vqa_accuracy", "VQA acc."), ("pope_accuracy", "POPE acc.")]
    present = [(k, label) for k, label in candidates if any(_lookup(m, k) is not None for m in results.values())]
    keys, labels = [k for k, _ in present], [label for _, label in present]
    names = list(results)
    x = np.arange(len(keys))
    width = 0.8 / max(len(names), 1)
    fig, ax = plt.subplots(figsize=(10, 4))
    for i, name in enumerate(names):
        values = [_lookup(results[name], k) for k in keys]
        # 95% intervals where the report has them (binomial rates); none for ratio-of-sums figures
        intervals = [_lookup(results[name], f"ci95.{k}") for k in keys]
        errors = np.array([[max(v - ci[0], 0.0), max(ci[1] - v, 0.0)] if ci else [np.nan, np.nan]
                           for v, ci in zip(values, intervals)]).T
        ax.bar(x + i * width, values, width, yerr=errors, capsize=2, label=name)
    ax.set_xticks(x + width * (len(names) - 1) / 2, labels, rotation=20)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("rate")
    ax.set_title("Hallucination (lower is better) and informativeness (higher is better)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
