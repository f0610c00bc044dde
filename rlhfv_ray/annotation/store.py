"""The annotation database: tasks (answers awaiting correction), who works on which, drafts and
submitted corrections, in SQLite.

WAL with `synchronous=FULL`: a submission is durable when its transaction commits, which is before
the page is told "saved"; a killed server loses no acknowledged work. One connection per call
(the web app serves requests from a thread pool); a task is handed out inside `BEGIN IMMEDIATE`,
so two annotators asking at once never get the same task unless `overlap` asks for it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY, task_set TEXT NOT NULL, position INTEGER NOT NULL, idx INTEGER NOT NULL,
    image BLOB NOT NULL, question TEXT NOT NULL, answer TEXT NOT NULL, ds_name TEXT NOT NULL,
    origin_split TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS work (
    task_id TEXT NOT NULL REFERENCES tasks(id), annotator TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('open', 'submitted', 'skipped')),
    draft TEXT, result TEXT, skip_reason TEXT, assigned_at REAL NOT NULL, updated_at REAL NOT NULL,
    PRIMARY KEY (task_id, annotator));
CREATE INDEX IF NOT EXISTS work_by_annotator ON work (annotator, state);
"""


class NotYours(LookupError):
    """The task is not open for this annotator (never assigned, or already submitted/skipped)."""


@dataclass(frozen=True)
class Task:
    id: str
    task_set: str
    question: str
    answer: str


class Store:
    def __init__(self, path: str | Path):
        self.path = str(path)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            yield db
        finally:
            db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT: one writer at a time, committed (durable) on exit."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def add_tasks(self, task_set: str, records: Iterable[dict]) -> int:
        """RLHF-V records awaiting a correction (`collect-feedback --annotator export`) as tasks of
        `task_set`; a record whose id is already a task is left as it is. Returns the tasks added."""
        added = 0
        with self._transaction() as db:
            position = db.execute("SELECT COALESCE(MAX(position), -1) + 1 FROM tasks").fetchone()[0]
            for record in records:
                split = json.loads(record.get("origin_split") or "{}")
                task_id = str(split.get("id", record["idx"]))
                text = json.loads(record["text"])
                cursor = db.execute(
                    "INSERT OR IGNORE INTO tasks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (task_id, task_set, position, int(record["idx"]), bytes(record["image"]["bytes"]),
                     text["question"], text["rejected"], record.get("ds_name") or "collected", json.dumps(split)))
                added += cursor.rowcount
                position += cursor.rowcount
        return added

    def next_task(self, annotator: str, overlap: int = 1) -> Task | None:
        """The annotator's open task, or a new one: the first task this annotator has not seen that
        fewer than `overlap` others hold or have submitted (a skip frees it). None when done."""
        with self._transaction() as db:
            row = db.execute("SELECT task_id FROM work WHERE annotator = ? AND state = 'open' "
                             "ORDER BY assigned_at LIMIT 1", (annotator,)).fetchone()
            if row is None:
                row = db.execute(
                    "SELECT id FROM tasks t WHERE NOT EXISTS "
                    "(SELECT 1 FROM work w WHERE w.task_id = t.id AND w.annotator = ?) "
                    "AND (SELECT COUNT(*) FROM work w WHERE w.task_id = t.id AND w.state != 'skipped') < ? "
                    "ORDER BY position LIMIT 1", (annotator, overlap)).fetchone()
                if row is None:
                    return None
                now = time.time()
                db.execute("INSERT INTO work (task_id, annotator, state, assigned_at, updated_at) "
                           "VALUES (?, ?, 'open', ?, ?)", (row[0], annotator, now, now))
            return self._task(db, row[0])

    @staticmethod
    def _task(db, task_id: str) -> Task:
        row = db.execute("SELECT id, task_set, question, answer FROM tasks WHERE id = ?", (task_id,)).fetchone()
        return Task(*row)

    def _open(self, db, task_id: str, annotator: str) -> None:
        row = db.execute("SELECT state FROM work WHERE task_id = ? AND annotator = ?", (task_id, annotator)).fetchone()
        if row is None or row[0] != "open":
            raise NotYours(f"task {task_id!r} is not open for {annotator!r}")

    def task_for(self, task_id: str, annotator: str) -> Task:
        """A task the annotator holds (open, submitted or skipped); NotYours otherwise."""
        with self._connect() as db:
            held = db.execute("SELECT 1 FROM work WHERE task_id = ? AND annotator = ?", (task_id, annotator))
            if held.fetchone() is None:
                raise NotYours(f"task {task_id!r} is not assigned to {annotator!r}")
            return self._task(db, task_id)

    def image(self, task: Task) -> bytes:
        """The image of a task that `task_for` handed out (so already checked to be the annotator's)."""
        with self._connect() as db:
            return db.execute("SELECT image FROM tasks WHERE id = ?", (task.id,)).fetchone()[0]

    def save_draft(self, task_id: str, annotator: str, draft: dict) -> None:
        with self._transaction() as db:
            self._open(db, task_id, annotator)
            db.execute("UPDATE work SET draft = ?, updated_at = ? WHERE task_id = ? AND annotator = ?",
                       (json.dumps(draft), time.time(), task_id, annotator))

    def draft(self, task_id: str, annotator: str) -> dict | None:
        """The annotator's own draft (no one else's: the key includes the annotator)."""
        with self._connect() as db:
            row = db.execute("SELECT draft FROM work WHERE task_id = ? AND annotator = ? AND state = 'open'",
                             (task_id, annotator)).fetchone()
        return json.loads(row[0]) if row and row[0] else None

    def submit(self, task_id: str, annotator: str, result: dict) -> None:
        """Durable on return (the COMMIT under synchronous=FULL)."""
        with self._transaction() as db:
            self._open(db, task_id, annotator)
            db.execute("UPDATE work SET state = 'submitted', result = ?, draft = NULL, updated_at = ? "
                       "WHERE task_id = ? AND annotator = ?", (json.dumps(result), time.time(), task_id, annotator))

    def skip(self, task_id: str, annotator: str, reason: str) -> None:
        with self._transaction() as db:
            self._open(db, task_id, annotator)
            db.execute("UPDATE work SET state = 'skipped', skip_reason = ?, draft = NULL, updated_at = ? "
                       "WHERE task_id = ? AND annotator = ?", (reason, time.time(), task_id, annotator))

    def progress(self, annotator: str | None = None) -> dict:
        """Per annotator: tasks open, submitted and skipped; per task set: tasks, and how many have
        a submission."""
        with self._connect() as db:
            people: dict[str, dict[str, int]] = {}
            counts = db.execute("SELECT annotator, state, COUNT(*) FROM work GROUP BY annotator, state")
            for name, state, count in counts:
                people.setdefault(name, {"open": 0, "submitted": 0, "skipped": 0})[state] = count
            sets = {name: {"tasks": total, "submitted": done} for name, total, done in db.execute(
                "SELECT task_set, COUNT(*), SUM(EXISTS (SELECT 1 FROM work w WHERE w.task_id = t.id "
                "AND w.state = 'submitted')) FROM tasks t GROUP BY task_set")}
        if annotator is not None:
            people = {annotator: people.get(annotator, {"open": 0, "submitted": 0, "skipped": 0})}
        return {"annotators": people, "task_sets": sets}

    def submissions(self) -> list[dict]:
        """Every submitted correction with its task, in task order then submission time."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT t.id, t.task_set, t.idx, t.image, t.question, t.answer, t.ds_name, t.origin_split, "
                "w.annotator, w.result, w.updated_at FROM work w JOIN tasks t ON t.id = w.task_id "
                "WHERE w.state = 'submitted' ORDER BY t.position, w.updated_at").fetchall()
        keys = ("id", "task_set", "idx", "image", "question", "answer", "ds_name", "origin_split",
                "annotator", "result", "submitted_at")
        return [{**dict(zip(keys, row)), "result": json.loads(row[9])} for row in rows]
