"""How every job reaches Ray: the cluster `ray job submit` points it at, or a local Ray."""

from __future__ import annotations

import os
import sys

from rlhfv_ray.config import StrictModel


class RayConfig(StrictModel):
    """How to reach Ray. `address: null` uses RAY_ADDRESS (set by `ray job submit`) or starts a
    local Ray; `num_cpus` caps a local Ray only."""

    address: str | None = None
    num_cpus: int | None = None


def init_ray(config: RayConfig) -> None:
    """Connect to the cluster named by `config.address` or RAY_ADDRESS (what `ray job submit`
    sets), or start a local Ray capped at `config.num_cpus`."""
    import ray
    import ray.data

    if not sys.stderr.isatty():  # progress bars redrawn line by line flood a log file
        ray.data.DataContext.get_current().enable_progress_bars = False
    if ray.is_initialized():
        return
    address = config.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address)
    else:
        ray.init(num_cpus=config.num_cpus, include_dashboard=False)
