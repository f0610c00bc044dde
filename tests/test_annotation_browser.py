"""The correction page in a real browser (headless Chromium driven by Selenium): the scene world's
oracle plays the annotator with the page's own controls, and what the page exports builds the same
shards as the oracle's direct output on the same answers. And a server killed while annotators
submit loses no submission it acknowledged."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from annotation_world import oracle_chosen, oracle_edits, scene_tasks
from rlhfv_ray.annotation.edits import TYPES
from rlhfv_ray.data.feedback import FEEDBACK_FILE, write_rlhfv_parquet

TOKENS = {"oracle": "oracle-token-0123456789", "second": "second-token-012345678"}
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
EVIL = '<img src=x onerror="document.title=\'pwned\'"><script>document.title="pwned"</script>'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on port {port}")


def start_server(tmp_path: Path, tasks: Path, port: int) -> subprocess.Popen:
    """`rlhfv annotate` as a user starts it, in its own process."""
    config = tmp_path / "annotate.yaml"
    config.write_text(yaml.safe_dump({"db": str(tmp_path / "annotations.db"), "tasks": [str(tasks)],
                                      "annotators": TOKENS, "port": port}))
    process = subprocess.Popen([sys.executable, "-m", "rlhfv_ray.cli", "annotate", "--config", str(config)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for_port(port)
    return process


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        pytest.fail(f"{missing} missing: `make test` installs Chromium (`make browser`, Debian's chromium "
                    "and chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def correct_with_the_page(driver, record: dict) -> None:
    """The oracle's correction of the task on screen, made with the page's controls and keys."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    body = driver.find_element(By.TAG_NAME, "body")
    edits = oracle_edits(record)
    for k, edit in enumerate(edits):
        word = lambda i: driver.find_element(By.CSS_SELECTOR, f'#answer .w[data-i="{i}"]')  # noqa: E731
        word(edit.start).click()
        if edit.end - edit.start > 1:
            ActionChains(driver).key_down(Keys.SHIFT).click(word(edit.end - 1)).key_up(Keys.SHIFT).perform()
        body.send_keys(str(TYPES.index(edit.type) + 1))  # the type's shortcut
        if edit.text:
            field = driver.find_element(By.ID, "replacement")
            field.send_keys(edit.text)
            field.send_keys(Keys.ENTER)
        elif k % 2:
            body.send_keys("d")
        else:
            driver.find_element(By.ID, "delete").click()
    if edits:
        body.send_keys("v")
    else:
        driver.find_element(By.ID, "correct").click()


def test_the_oracle_corrects_through_the_page_and_the_export_builds_the_same_shards(
        browser, ray_session, tiny_model_dir, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    from rlhfv_ray.annotation.export import ExportConfig, export_corrections
    from rlhfv_ray.data.pipeline import ShardConfig, build_shards

    records = scene_tasks(8)
    evil = {**scene_tasks(1, first=100)[0]}
    evil["text"] = json.dumps({"question": "Describe <b>it</b>.", "chosen": "", "rejected": f"{EVIL} two cars"})
    write_rlhfv_parquet(pd.DataFrame([evil, *records]), tmp_path / "awaiting.parquet")
    port = free_port()
    server = start_server(tmp_path, tmp_path / "awaiting.parquet", port)
    try:
        wait = WebDriverWait(browser, 20)
        browser.get(f"http://127.0.0.1:{port}/")
        wait.until(seen.visibility_of_element_located((By.ID, "token"))).send_keys(TOKENS["oracle"])
        browser.find_element(By.ID, "login").click()

        # the first task's answer is HTML and script: shown as text, never run
        wait.until(seen.text_to_be_present_in_element((By.ID, "task-id"), "scene-100"))
        assert browser.find_element(By.ID, "answer").text.startswith("<img src=x")
        assert browser.find_element(By.ID, "question").text == "Describe <b>it</b>."
        assert browser.title == "RLHF-V corrections"
        browser.find_element(By.ID, "skip").click()
        browser.find_element(By.ID, "skip-reason").send_keys("not a scene description")
        browser.find_element(By.ID, "skip-confirm").click()

        by_id = {json.loads(r["origin_split"])["id"]: r for r in records}
        for _ in records:
            task_id = wait.until(lambda d: d.find_element(By.ID, "task-id").text != "scene-100"
                                 and d.find_element(By.ID, "task-id").text)
            words = [w.text for w in browser.find_elements(By.CSS_SELECTOR, "#answer .w")]
            assert " ".join(words) == json.loads(by_id[task_id]["text"])["rejected"]
            correct_with_the_page(browser, by_id[task_id])
            wait.until(seen.visibility_of_element_located((By.ID, "submit")))
            assert browser.find_element(By.ID, "diff").text  # the diff is shown before submitting
            browser.find_element(By.ID, "submit").click()
            wait.until(lambda d: d.find_element(By.ID, "done-view").is_displayed()
                       or d.find_element(By.ID, "task-id").text != task_id)
        wait.until(seen.visibility_of_element_located((By.ID, "done-view")))
        assert browser.title == "RLHF-V corrections"
    finally:
        server.terminate()
        server.wait(timeout=30)

    stats = export_corrections(ExportConfig(db=str(tmp_path / "annotations.db"), out=str(tmp_path / "export")))
    direct = [{**r, "text": json.dumps({**json.loads(r["text"]), "chosen": oracle_chosen(r)})} for r in records
              if oracle_chosen(r) != json.loads(r["text"])["rejected"]]
    assert stats["pairs"] == len(direct) and stats["correct"] == len(records) - len(direct)
    assert stats["progress"]["annotators"]["oracle"] == {"open": 0, "submitted": 8, "skipped": 1}
    exported = pq.read_table(tmp_path / "export" / FEEDBACK_FILE).to_pylist()
    for row in exported:
        split = json.loads(row["origin_split"])
        assert split["annotator"] == "oracle" and set(split["types"]) <= set(TYPES) and split["types"]
    write_rlhfv_parquet(pd.DataFrame(direct), tmp_path / "direct.parquet")

    # one build over both files: each pair's two rows (from the page, from the oracle) must agree
    build_shards(ShardConfig(input=[str(tmp_path / "export" / FEEDBACK_FILE), str(tmp_path / "direct.parquet")],
                             model=str(tiny_model_dir), out=str(tmp_path / "shards")))
    from rlhfv_ray.data.shards import shard_files

    by_idx: dict[int, list[dict]] = {}
    for row in pq.read_table(shard_files(str(tmp_path / "shards"))).to_pylist():
        by_idx.setdefault(row["idx"], []).append(row)
    assert len(by_idx) == len(direct) > 0 and all(len(rows) == 2 for rows in by_idx.values())
    for from_page, from_oracle in by_idx.values():
        for key in ("prompt_ids", "chosen_ids", "rejected_ids", "chosen_corrected", "rejected_corrected"):
            assert from_page[key] == from_oracle[key], key
        for key in ("ref_chosen_logps", "ref_rejected_logps"):
            assert from_page[key] == pytest.approx(from_oracle[key], abs=1e-5)


def test_killing_the_server_during_submissions_loses_no_acknowledged_one(tmp_path):
    """Two annotators submit as fast as they can; the server is killed (SIGKILL) mid-way and started
    again; every submission it answered "saved" is in the database, and the rest can be redone."""
    import httpx

    from rlhfv_ray.annotation.store import Store

    write_rlhfv_parquet(pd.DataFrame(scene_tasks(60)), tmp_path / "awaiting.parquet")
    port = free_port()
    server = start_server(tmp_path, tmp_path / "awaiting.parquet", port)
    acknowledged: dict[str, set[str]] = {name: set() for name in TOKENS}
    stop = threading.Event()

    def annotate(name: str) -> None:
        headers = {"authorization": f"Bearer {TOKENS[name]}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=5) as client:
            while not stop.is_set():
                try:
                    task = client.get("/api/task").json()["task"]
                    if task is None:
                        return
                    response = client.post(f"/api/tasks/{task['id']}/submit", json={"verdict": "correct", "edits": []})
                    if response.status_code == 200 and response.json().get("saved"):
                        acknowledged[name].add(task["id"])
                except httpx.HTTPError:
                    time.sleep(0.05)  # the server is down: try again until it is back

    workers = [threading.Thread(target=annotate, args=(name,)) for name in TOKENS]
    [w.start() for w in workers]
    deadline = time.monotonic() + 60
    while sum(map(len, acknowledged.values())) < 15 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(server.pid, signal.SIGKILL)
    server.wait()
    before_kill = {name: set(ids) for name, ids in acknowledged.items()}
    assert sum(map(len, before_kill.values())) >= 15
    server = start_server(tmp_path, tmp_path / "awaiting.parquet", port)
    try:
        [w.join(timeout=120) for w in workers]
    finally:
        stop.set()
        server.terminate()
        server.wait(timeout=30)
    stored = {name: set() for name in TOKENS}
    for submission in Store(tmp_path / "annotations.db").submissions():
        stored[submission["annotator"]].add(submission["id"])
    for name in TOKENS:
        assert before_kill[name] <= stored[name]  # nothing acknowledged before the kill is lost
        assert acknowledged[name] <= stored[name]
        # stored but not acknowledged: at most the one whose answer the kill cut off
        assert len(stored[name] - acknowledged[name]) <= 1
    assert sum(map(len, stored.values())) == 60  # after the restart the rest were done: none lost, none twice
