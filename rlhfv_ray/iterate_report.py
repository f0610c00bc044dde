"""The report of `rlhfv iterate`: each round's figures with their intervals, the paired test against
the round before and against the base (report.json, report.md, report.png in the run's directory)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from rlhfv_ray.eval.report import markdown_table, paired_table

logger = logging.getLogger(__name__)


def plot_rounds(results: dict[str, dict], path: Path) -> None:
    """Response-level hallucination per round with its 95% interval; recall and VQA beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    x = range(len(names))
    fig, ax = plt.subplots(figsize=(7, 4))
    lines = (("response_hallucination_rate", "response hallucination ↓"), ("object_recall", "object recall ↑"),
             ("vqa_accuracy", "VQA accuracy ↑"))
    for key, label in lines:
        values = [results[n].get(key) for n in names]
        if any(v is None for v in values):
            continue
        intervals = [results[n].get("ci95", {}).get(key) for n in names]
        errors = [[v - ci[0] if ci else 0 for v, ci in zip(values, intervals)],
                  [ci[1] - v if ci else 0 for v, ci in zip(values, intervals)]]
        ax.errorbar(list(x), values, yerr=errors, marker="o", capsize=3, label=label)
    ax.set_xticks(list(x), names)
    ax.set_ylim(0, 1.05)
    ax.set_title("On-policy rounds (95% intervals)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(out: Path, results: dict[str, dict], paired: dict[str, dict], pairs: dict[str, int]) -> dict:
    report = {"results": results, "paired": paired, "pairs_per_round": pairs}
    (out / "report.json").write_text(json.dumps(report, indent=2))
    pair_row = "| pairs trained on | " + " | ".join(str(pairs.get(n, "")) for n in results) + " |\n"
    table = markdown_table(results) + pair_row + "\n" + paired_table(paired)
    (out / "report.md").write_text(table)
    plot_rounds(results, out / "report.png")
    logger.info("iterate: report in %s\n\n%s", out / "report.md", table)
    return report
