"""Initial model job: `python jobs/build_model.py [--config FILE] [key=value ...]`, locally or via
`ray job submit --working-dir . -- python jobs/build_model.py ...`."""

import sys

from rlhfv_ray.cli import run_job


def main(argv=None) -> int:
    return run_job("build-model", argv)


if __name__ == "__main__":
    sys.exit(main())
