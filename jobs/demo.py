"""End-to-end demo: `python jobs/demo.py [--config FILE] [key=value ...]`, locally or via
`ray job submit --working-dir . -- python jobs/demo.py ...`."""

import sys

from rlhfv_ray.cli import run_job


def main(argv=None) -> int:
    return run_job("demo", argv)


if __name__ == "__main__":
    sys.exit(main())
