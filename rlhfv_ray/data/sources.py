"""Reading raw rows from what users have, and counting what became of each one.

Inputs are parquet files and JSON (an array of objects, as LLaVA-Instruct ships) or JSON Lines,
given as one path, a glob or a list of them, local or on any filesystem pyarrow reads (s3://, gs://,
...). Every input row becomes exactly one row of the Ray Dataset `read_rows` returns, and every such
row one output row of a prepare stage: a usable row or a reject with its reason. So
`read = used + rejected` holds by construction, and `account` checks it.
"""

from __future__ import annotations

import glob
import json
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Annotated

import pandas as pd
from pydantic import BeforeValidator

OK = "ok"
REJECT_COLUMNS = ["id", "reason", "message"]


def _as_list(value):
    """A single path is a list of one (`--input data.parquet` on a command line)."""
    return [value] if isinstance(value, str) else value


# A config field of paths: one path, a glob or a list of them.
Paths = Annotated[list[str], BeforeValidator(_as_list)]


class RowError(ValueError):
    """A row that cannot be used; `reason` is the short code counted in the summary."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def expand_paths(paths: list[str]) -> list[str]:
    """Local globs expanded (sorted; a glob matching nothing is an error naming it); URIs and
    directories passed on as they are (Ray's readers list them)."""
    out = []
    for path in paths:
        if "://" not in path and glob.has_magic(path):
            matches = sorted(glob.glob(path))
            if not matches:
                raise FileNotFoundError(f"no file matches {path!r}")
            out += [str(Path(m).resolve()) for m in matches]
        elif "://" in path:
            out.append(path)
        else:  # absolute: Ray's read tasks need not run in this process's working directory
            if not Path(path).exists():
                raise FileNotFoundError(f"input {path!r} does not exist")
            out.append(str(Path(path).resolve()))
    return out


def _is_json(path: str) -> bool:
    return path.endswith((".jsonl", ".json", ".jsonl.gz", ".json.gz"))


def _parent(path: str) -> str:
    return str(PurePosixPath(path).parent) if "://" in path else str(Path(path).parent)


def _json_file_rows(item: dict) -> list[dict]:
    """Rows of one JSON file: the elements of a top-level array, or its lines (JSON Lines). Each row
    keeps its raw text, parsed by the prepare stage, so one bad line is one reject."""
    path, data = item["path"], item["bytes"]
    if path.endswith(".gz"):
        import gzip

        data = gzip.decompress(data)
    text = data.decode("utf-8", errors="replace")
    base = {"base_dir": _parent(path)}
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as error:
            return [{**base, "raw_line": None, "file_error": f"{path} is not valid JSON: {error}"}]
        return [{**base, "raw_line": json.dumps(x), "file_error": None} for x in items]
    return [{**base, "raw_line": line, "file_error": None} for line in text.splitlines() if line.strip()]


def read_rows(paths: list[str], parquet_columns: list[str]):
    """A Ray Dataset with one row per input row: parquet rows carry `parquet_columns` (None where a
    file lacks one), JSON rows their text in `raw_line`; `base_dir` is the file's folder (relative
    image paths resolve against it), `file_error` set where a whole file could not be parsed."""
    import ray.data

    paths = expand_paths(list(paths))
    parquet = [p for p in paths if not _is_json(p)]
    json_files = [p for p in paths if _is_json(p)]
    parts = []
    if parquet:
        def normalise(frame: pd.DataFrame) -> pd.DataFrame:
            kept = {c: frame[c] if c in frame else None for c in parquet_columns}
            return pd.DataFrame({**kept, "raw_line": None, "base_dir": None, "file_error": None},
                                index=frame.index)

        parts.append(ray.data.read_parquet(parquet).map_batches(normalise, batch_format="pandas"))
    if json_files:
        rows = ray.data.read_binary_files(json_files, include_paths=True).flat_map(_json_file_rows)
        parts.append(rows.map(lambda r: {**{c: None for c in parquet_columns}, "raw_line": r["raw_line"],
                                         "base_dir": r["base_dir"], "file_error": r["file_error"]}))
    return parts[0] if len(parts) == 1 else parts[0].union(*parts[1:])


def read_local_rows(paths: list[str]) -> tuple[list[dict], list[RowError]]:
    """(rows, errors) of small inputs read in this process, without Ray: the same formats and JSON
    parsing as `read_rows`, one RowError per row that is not a JSON object."""
    import pyarrow.fs
    import pyarrow.parquet as pq

    rows, errors = [], []
    for path in expand_paths(list(paths)):
        if not _is_json(path):
            rows += pq.read_table(path).to_pylist()
            continue
        filesystem, inner = pyarrow.fs.FileSystem.from_uri(path if "://" in path else Path(path).as_uri())
        with filesystem.open_input_stream(inner) as stream:
            raw_rows = _json_file_rows({"path": path, "bytes": stream.read()})
        for raw in raw_rows:
            try:
                rows.append(parse_raw(raw))
            except RowError as error:
                errors.append(error)
    return rows, errors


def parse_raw(raw: dict) -> dict:
    """The row as a dict: a parquet row as it is, a JSON row parsed (RowError if it is not an object)."""
    if raw.get("file_error"):
        raise RowError("malformed_json_file", raw["file_error"])
    if raw.get("raw_line") is None:
        return raw
    try:
        parsed = json.loads(raw["raw_line"])
    except json.JSONDecodeError as error:
        raise RowError("malformed_json_line", f"line is not JSON: {error}") from None
    if not isinstance(parsed, dict):
        raise RowError("malformed_json_line", "line is not a JSON object")
    return {**parsed, "base_dir": raw.get("base_dir")}


def reject(row_id, error: RowError) -> dict:
    return {"status": error.reason, "message": str(error), "id": "" if row_id is None else str(row_id)}


def account(prepared, out_dir: str | Path, rejects_name: str) -> dict:
    """Write the rejects of a materialized prepared dataset (`status`, `message`, `id` columns) to
    `out_dir/rejects_name`; return {read, used, rejected, rejects_by_reason}."""
    empty = prepared.count() == 0  # an input with no rows yields no batches, hence no columns
    statuses = [] if empty else list(prepared.select_columns(["status"]).to_pandas()["status"])
    frame = pd.DataFrame({c: pd.Series([], dtype=object) for c in REJECT_COLUMNS})
    if len(statuses) and any(s != OK for s in statuses):
        rejected = prepared.filter(lambda r: r["status"] != OK).select_columns(["id", "status", "message"])
        frame = rejected.to_pandas().rename(columns={"status": "reason"})[REJECT_COLUMNS]
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    frame.to_parquet(Path(out_dir) / rejects_name, index=False)
    summary = {"read": len(statuses), "used": len(statuses) - len(frame), "rejected": len(frame),
               "rejects_by_reason": dict(Counter(s for s in statuses if s != OK))}
    if summary["read"] != summary["used"] + summary["rejected"]:
        raise RuntimeError(f"row accounting broke: {summary}")
    return summary
