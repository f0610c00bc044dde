"""DDPO training job: `python jobs/train.py [--config FILE] [key=value ...]`, locally or via
`ray job submit --working-dir . -- python jobs/train.py ...`."""

import sys

from rlhfv_ray.cli import run_job


def main(argv=None) -> int:
    return run_job("train", argv)


if __name__ == "__main__":
    sys.exit(main())
