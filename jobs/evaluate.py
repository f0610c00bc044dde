"""Hallucination benchmark: `python jobs/evaluate.py --model PATH --out FILE.json [key=value ...]`, locally or via
`ray job submit --working-dir . -- python jobs/evaluate.py ...`."""

import sys

from rlhfv_ray.cli import run_job


def main(argv=None) -> int:
    return run_job("evaluate", argv)


if __name__ == "__main__":
    sys.exit(main())
