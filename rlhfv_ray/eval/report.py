"""Benchmark reports: a Markdown table and a PNG chart comparing one or more models."""

from __future__ import annotations

from pathlib import Path

from rlhfv_ray.world.spec import HALLUCINATION_TYPES

# (label, key, lower is better?) of the table's rows, in order.
ROWS: list[tuple[str, str, bool | None]] = [
    ("response hallucination rate", "response_hallucination_rate", True),
    ("mention hallucination rate (CHAIR_i)", "mention_hallucination_rate", True),
    *((f"  {t} hallucination (response-level)", f"hallucination_by_type.{t}", True) for t in HALLUCINATION_TYPES),
    ("object recall", "object_recall", False),
    ("VQA accuracy", "vqa_accuracy", False),
    ("over-generalization delta (mean)", "overgeneralization_delta_mean", True),
    ("mean response words", "mean_response_words", None),
    ("unparsed responses", "unparsed_responses", True),
    ("responses", "n_responses", None),
]


def _lookup(metrics: dict, dotted: str):
    value = metrics
    for part in dotted.split("."):
        value = value[part]
    return value


def _fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def markdown_table(results: dict[str, dict]) -> str:
    """Rows are metrics, columns the models of `results` (name -> metrics), in insertion order."""
    names = list(results)
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for label, key, lower_better in ROWS:
        arrow = "" if lower_better is None else (" ↓" if lower_better else " ↑")
        cells = [_fmt(_lookup(results[n], key)) for n in names]
        lines.append(f"| {label}{arrow} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_metrics(results: dict[str, dict], path: str | Path) -> None:
    """Grouped bars of the rates (hallucination by type, recall, VQA) per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    keys = ["response_hallucination_rate", "mention_hallucination_rate",
            *(f"hallucination_by_type.{t}" for t in HALLUCINATION_TYPES), "object_recall", "vqa_accuracy"]
    labels = ["response", "mention", *HALLUCINATION_TYPES, "recall", "VQA acc."]
    names = list(results)
    x = np.arange(len(keys))
    width = 0.8 / max(len(names), 1)
    fig, ax = plt.subplots(figsize=(10, 4))
    for i, name in enumerate(names):
        ax.bar(x + i * width, [_lookup(results[name], k) for k in keys], width, label=name)
    ax.set_xticks(x + width * (len(names) - 1) / 2, labels, rotation=20)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("rate")
    ax.set_title("Hallucination (lower is better) and informativeness (higher is better)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
