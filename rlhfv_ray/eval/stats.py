"""Sampling error of the benchmark's figures (pure).

A rate measured on a few hundred responses carries a sampling error of a few points (0.44 on 300
responses: ±0.056 at 95%), as large as many of the differences the project reports. So every
binomial figure gets a Wilson interval, and two models scored on the same scenes are compared
paired (each scene answered by both), which removes the scene-to-scene variance the two share:

- `wilson_interval(k, n)`: 95% score interval of a proportion k/n (well-behaved near 0 and 1,
  unlike the normal approximation).
- `paired_rate_difference(a, b)`: for per-scene outcomes a_i, b_i in {0, 1} (1 = hallucinated),
  the difference of rates b - a with its paired 95% interval (normal approximation on the
  per-scene differences) and the exact two-sided McNemar p-value of the discordant scenes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

Z95 = 1.959963984540054  # two-sided 95% quantile of the standard normal


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval of successes / trials; (0, 1) when there are no trials."""
    if trials <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= trials:
        raise ValueError(f"successes ({successes}) must lie in [0, trials ({trials})]")
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    # exact at the edges: centre - half for 0 successes is 0 only up to rounding
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


def mcnemar_exact_p(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: discordant pairs split as Binomial(only_a + only_b, 1/2)."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


@dataclass(frozen=True)
class PairedDifference:
    n: int
    rate_a: float
    rate_b: float
    difference: float  # rate_b - rate_a
    ci95: tuple[float, float]
    only_a: int  # scenes where only a hallucinated
    only_b: int
    mcnemar_p: float

    def to_dict(self) -> dict:
        return asdict(self)


def paired_rate_difference(a: Sequence[int], b: Sequence[int], z: float = Z95) -> PairedDifference:
    """Rate of b minus rate of a over the same items, paired (see the module docstring)."""
    if len(a) != len(b) or not a:
        raise ValueError(f"need two equally long, non-empty outcome lists (got {len(a)} and {len(b)})")
    n = len(a)
    only_a = sum(1 for x, y in zip(a, b) if x and not y)
    only_b = sum(1 for x, y in zip(a, b) if y and not x)
    difference = (only_b - only_a) / n
    # variance of the mean of d_i = b_i - a_i in {-1, 0, 1}: (E[d^2] - E[d]^2) / n
    half = z * math.sqrt(max((only_a + only_b) / n - difference ** 2, 0.0) / n)
    return PairedDifference(n=n, rate_a=sum(map(bool, a)) / n, rate_b=sum(map(bool, b)) / n,
                            difference=difference, ci95=(difference - half, difference + half),
                            only_a=only_a, only_b=only_b, mcnemar_p=mcnemar_exact_p(only_a, only_b))
