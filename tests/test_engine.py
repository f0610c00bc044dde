"""The DeepSpeed set-up every training worker runs before its engine starts."""

import pytest
import torch

from rlhfv_ray.training.engine import prepare_deepspeed


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU accelerator's op")
def test_deepspeed_on_cpu_does_not_build_its_shared_memory_all_reduce():
    prepare_deepspeed()
    from deepspeed.comm.torch import build_shm_op

    assert build_shm_op() is None  # no C++ build, nothing loaded: training reduces through gloo
