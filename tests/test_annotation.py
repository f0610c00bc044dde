"""The correction page's core without a browser: edits, the SQLite store, the JSON API, the export."""

from __future__ import annotations

import json
import threading

import pyarrow.parquet as pq
import pytest
from starlette.testclient import TestClient

from annotation_world import oracle_chosen, oracle_edits, scene_tasks
from rlhfv_ray.annotation.app import AnnotateConfig, build_app
from rlhfv_ray.annotation.edits import Edit, EditError, apply_edits, diff, edits_between
from rlhfv_ray.annotation.export import ExportConfig, export_corrections
from rlhfv_ray.annotation.store import NotYours, Store
from rlhfv_ray.data.feedback import FEEDBACK_FILE, write_rlhfv_parquet

TOKENS = {"alice": "alice-token-0123456789", "bob": "bob-token-0123456789ab"}
ANSWER = "There are two red cars in the top left. A dog sits in the middle."


def edit(start, end, text="", type="object"):
    return Edit(start=start, end=end, text=text, type=type)


def test_edits_replace_and_delete_words():
    # words: 0 There 1 are 2 two 3 red 4 cars 5 in 6 the 7 top 8 left. 9 A 10 dog 11 sits 12 in 13 the 14 middle.
    edits = [edit(9, 15), edit(2, 4, "three blue", "number")]
    assert apply_edits(ANSWER, edits) == "There are three blue cars in the top left."
    assert [(p.kind, p.text) for p in diff(ANSWER, edits)] == [
        ("same", "There are"), ("removed", "two red"), ("added", "three blue"), ("same", "cars in the top left."),
        ("removed", "A dog sits in the middle.")]
    assert apply_edits(ANSWER, [edit(0, 0, "Look:")]).startswith("Look: There are")
    for bad in ([edit(14, 16)], [edit(2, 4), edit(3, 5)], [edit(5, 5)]):
        with pytest.raises(EditError):
            apply_edits(ANSWER, bad)


def test_edits_between_turn_an_answer_into_its_correction():
    corrected = "There are three red cars in the top left."
    edits = edits_between(ANSWER, corrected)
    assert apply_edits(ANSWER, edits) == corrected
    for record in scene_tasks(20):
        answer = json.loads(record["text"])["rejected"]
        assert apply_edits(answer, oracle_edits(record)) == " ".join(oracle_chosen(record).split())


@pytest.fixture
def tasks_file(tmp_path):
    import pandas as pd

    path = tmp_path / "awaiting.parquet"  # six answers the oracle corrects
    write_rlhfv_parquet(pd.DataFrame([r for r in scene_tasks(12) if oracle_edits(r)][:6]), path)
    return path


def test_annotators_never_share_a_task_and_skips_free_it(tmp_path, tasks_file):
    store = Store(tmp_path / "a.db")
    assert store.add_tasks("round-1", pq.read_table(tasks_file).to_pylist()) == 6
    assert store.add_tasks("round-1", pq.read_table(tasks_file).to_pylist()) == 0  # same ids: kept once
    handed: dict[str, list[str]] = {}

    def work(name: str) -> None:  # six annotators asking at once
        store_here = Store(tmp_path / "a.db")
        task = store_here.next_task(name)
        handed[name] = [task.id] if task else []

    threads = [threading.Thread(target=work, args=(f"a{i}",)) for i in range(6)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    ids = [i for got in handed.values() for i in got]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 6
    assert store.next_task("late") is None
    store.skip(handed["a0"][0], "a0", "image unreadable")
    assert store.next_task("late").id == handed["a0"][0]  # a skipped task goes to someone else
    assert store.next_task("a0") is None  # but not back to who skipped it
    with pytest.raises(NotYours):
        store.submit(handed["a1"][0], "a2", {"verdict": "correct", "chosen": "", "edits": []})


def test_overlap_gives_each_task_to_that_many_annotators(tmp_path, tasks_file):
    store = Store(tmp_path / "a.db")
    store.add_tasks("s", pq.read_table(tasks_file).to_pylist())
    first = store.next_task("alice", overlap=2)
    assert store.next_task("bob", overlap=2).id == first.id
    assert store.next_task("carol", overlap=2).id != first.id


@pytest.fixture
def client(tmp_path, tasks_file):
    config = AnnotateConfig(db=str(tmp_path / "a.db"), tasks=[str(tasks_file)], annotators=TOKENS)
    with TestClient(build_app(config)) as test_client:
        yield test_client


def login(client, name):
    response = client.post("/api/login", json={"token": TOKENS[name]})
    assert response.status_code == 200 and response.json() == {"annotator": name}


def test_api_refuses_without_a_token_and_bad_requests_get_json(client):
    assert client.get("/api/task").status_code == 401
    assert client.post("/api/login", json={"token": "guess"}).json()["error"]["code"] == "bad_token"
    login(client, "alice")
    task = client.get("/api/task").json()["task"]
    submit = f"/api/tasks/{task['id']}/submit"
    for payload, status in (({"verdict": "corrected", "edits": []}, 422),
                            ({"verdict": "corrected", "edits": [{"start": 0, "end": 999, "type": "object"}]}, 422),
                            ({"verdict": "maybe"}, 422), ({"verdict": "correct", "extra": 1}, 422)):
        response = client.post(submit, json=payload)
        assert response.status_code == status and "message" in response.json()["error"], payload
    assert client.post(submit, content=b"not json").status_code == 422
    assert client.post("/api/tasks/no-such-task/submit", json={"verdict": "correct"}).status_code == 409
    assert client.get("/api/task").json()["task"]["id"] == task["id"]  # still open: nothing was lost


def test_drafts_are_private_and_submissions_export_as_rlhfv_pairs(client, tmp_path, tasks_file):
    records = {json.loads(r["origin_split"])["id"]: r for r in pq.read_table(tasks_file).to_pylist()}
    login(client, "alice")
    task = client.get("/api/task").json()["task"]
    edits = [e.model_dump() for e in oracle_edits(records[task["id"]])]
    assert client.put(f"/api/tasks/{task['id']}/draft", json={"edits": edits}).json() == {"saved": True}
    assert client.get("/api/task").json()["draft"] == {"edits": edits}  # resumed where it was left
    bob = TestClient(client.app)
    login(bob, "bob")
    assert bob.put(f"/api/tasks/{task['id']}/draft", json={"edits": []}).status_code == 409
    assert bob.get(f"/api/tasks/{task['id']}/image").status_code == 409
    assert bob.get("/api/task").json()["task"]["id"] != task["id"]
    response = client.post(f"/api/tasks/{task['id']}/submit", json={"verdict": "corrected", "edits": edits})
    assert response.json() == {"saved": True, "chosen": " ".join(oracle_chosen(records[task["id"]]).split())}

    stats = export_corrections(ExportConfig(db=str(tmp_path / "a.db"), out=str(tmp_path / "export")))
    assert stats["pairs"] == 1 and stats["submissions"] == 1
    [row] = pq.read_table(tmp_path / "export" / FEEDBACK_FILE).to_pylist()
    text, split = json.loads(row["text"]), json.loads(row["origin_split"])
    assert text["rejected"] == json.loads(records[task["id"]]["text"])["rejected"]
    assert text["chosen"] == response.json()["chosen"]
    assert split["annotator"] == "alice" and split["id"] == task["id"] and split["submitted_at"]
    assert split["types"] == sorted({e["type"] for e in edits}) and row["image"] == records[task["id"]]["image"]


def test_model_text_reaches_the_page_as_data_only(tmp_path):
    """An answer holding HTML and script is served as a JSON string; the page puts strings in with
    textContent (the browser test shows it as text) and its policy runs no inline script."""
    import pandas as pd

    evil = '<img src=x onerror="document.title=\'pwned\'"><script>document.title="pwned"</script> two cars'
    record = {**scene_tasks(1)[0]}
    record["text"] = json.dumps({"question": "<b>Describe</b>", "chosen": "", "rejected": evil})
    path = tmp_path / "evil.parquet"
    write_rlhfv_parquet(pd.DataFrame([record]), path)
    config = AnnotateConfig(db=str(tmp_path / "a.db"), tasks=[str(path)], annotators=TOKENS)
    with TestClient(build_app(config)) as client:
        page = client.get("/")
        assert "script-src 'self'" in page.headers["content-security-policy"] and "pwned" not in page.text
        login(client, "alice")
        task = client.get("/api/task").json()["task"]
        assert " ".join(task["words"]) == " ".join(evil.split()) and task["question"] == "<b>Describe</b>"
    source = (build_app.__globals__["PAGE"] / "app.js").read_text()
    assert "innerHTML" not in source and "insertAdjacentHTML" not in source
