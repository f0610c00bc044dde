// The correction page. Every model-written string is put in with textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const TYPES = ["object", "attribute", "number", "position", "action", "other"];
let task = null, edits = [], selection = null, verdict = null, reviewed = false;

async function api(method, path, payload) {
  const response = await fetch(path, {
    method, credentials: "same-origin",
    headers: payload === undefined ? {} : {"content-type": "application/json"},
    body: payload === undefined ? undefined : JSON.stringify(payload),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw Object.assign(new Error(data.error ? data.error.message : response.statusText),
                                        {status: response.status});
  return data;
}

function show(view) {
  for (const id of ["login-view", "task-view", "done-view"]) $(id).hidden = id !== view;
}

function status(text) { $("status").textContent = text; }

function showProgress(progress) {
  const mine = Object.values(progress.annotators)[0] || {submitted: 0, skipped: 0};
  $("progress").textContent = `${mine.submitted} submitted, ${mine.skipped} skipped`;
}

async function loadTask() {
  let data;
  try { data = await api("GET", "/api/task"); }
  catch (e) { if (e.status === 401) { show("login-view"); return; } throw e; }
  $("who").textContent = data.annotator;
  showProgress(data.progress);
  if (!data.task) { show("done-view"); return; }
  task = data.task;
  edits = data.draft ? data.draft.edits : [];
  selection = null; verdict = null; reviewed = false;
  $("task-id").textContent = task.id;
  $("task-set").textContent = task.task_set;
  $("question").textContent = task.question;
  $("image").src = `/api/tasks/${encodeURIComponent(task.id)}/image`;
  $("review-view").hidden = true;
  $("skip-reason").hidden = $("skip-confirm").hidden = true;
  status(data.draft ? "draft restored" : "");
  render();
  show("task-view");
}

function editedWords() {
  const marked = new Set();
  for (const e of edits) for (let i = e.start; i < e.end; i++) marked.add(i);
  return marked;
}

function render() {
  const answer = $("answer"), marked = editedWords();
  answer.replaceChildren();
  task.words.forEach((word, i) => {
    const span = document.createElement("span");
    span.className = "w";
    span.dataset.i = i;
    span.textContent = word;
    if (marked.has(i)) span.classList.add("edited");
    if (selection && i >= selection.start && i < selection.end) span.classList.add("selected");
    answer.append(span, " ");
  });
  const list = $("edits");
  list.replaceChildren();
  edits.forEach((e, k) => {
    const item = document.createElement("li");
    const before = task.words.slice(e.start, e.end).join(" ");
    item.textContent = `“${before}” → ${e.text ? `“${e.text}”` : "deleted"} (${e.type}) `;
    const remove = document.createElement("button");
    remove.type = "button"; remove.textContent = "remove"; remove.className = "remove";
    remove.addEventListener("click", () => { edits.splice(k, 1); changed(); });
    item.append(remove);
    list.append(item);
  });
}

function changed() {
  reviewed = false; verdict = null;
  $("review-view").hidden = true;
  render();
  api("PUT", `/api/tasks/${encodeURIComponent(task.id)}/draft`, {edits})
    .then(() => status("draft saved")).catch((e) => status(`draft not saved: ${e.message}`));
}

function select(i, extend) {
  if (extend && selection) {
    selection = {start: Math.min(selection.anchor, i), end: Math.max(selection.anchor, i) + 1, anchor: selection.anchor};
  } else {
    selection = {start: i, end: i + 1, anchor: i};
  }
  render();
}

function addEdit(text) {
  if (!selection) { status("select the words to correct first"); return; }
  const overlaps = edits.some((e) => selection.start < e.end && e.start < selection.end);
  if (overlaps) { status("these words are already corrected: remove that edit first"); return; }
  edits.push({start: selection.start, end: selection.end, text: text.trim(), type: $("type").value});
  edits.sort((a, b) => a.start - b.start);
  selection = null;
  $("replacement").value = "";
  changed();
}

async function review(markCorrect) {
  verdict = markCorrect ? "correct" : "corrected";
  if (markCorrect && edits.length) { status("remove the edits to mark the answer correct"); return; }
  if (!markCorrect && !edits.length) { status("no edits yet: correct words, or mark the answer correct"); return; }
  const data = await api("POST", `/api/tasks/${encodeURIComponent(task.id)}/preview`, {edits});
  const out = $("diff");
  out.replaceChildren();
  if (markCorrect) out.textContent = "No changes: the answer is marked correct.";
  for (const part of markCorrect ? [] : data.diff) {
    const span = document.createElement("span");
    span.className = `diff-${part.kind}`;
    span.textContent = part.text;
    out.append(span, " ");
  }
  reviewed = true;
  $("review-view").hidden = false;
  $("submit").focus();
}

async function submit() {
  if (!reviewed) { status("review the changes before submitting"); return; }
  try {
    await api("POST", `/api/tasks/${encodeURIComponent(task.id)}/submit`, {verdict, edits});
    status("saved");
    await loadTask();
    status("saved");
  } catch (e) { status(`not saved: ${e.message}`); }
}

async function skip() {
  const reason = $("skip-reason").value.trim();
  if (!reason) { status("say why you skip this task"); $("skip-reason").focus(); return; }
  await api("POST", `/api/tasks/${encodeURIComponent(task.id)}/skip`, {reason});
  $("skip-reason").value = "";
  await loadTask();
  status("skipped");
}

function onKey(event) {
  const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(event.target.tagName);
  if (typing) {
    if (event.key === "Enter" && event.target.id === "replacement") { event.preventDefault(); addEdit($("replacement").value); }
    if (event.key === "Enter" && event.target.id === "skip-reason") { event.preventDefault(); skip(); }
    if (event.key === "Escape") event.target.blur();
    return;
  }
  if ($("task-view").hidden || event.ctrlKey || event.metaKey || event.altKey) return;
  const key = event.key;
  if (key >= "1" && key <= "6") $("type").value = TYPES[Number(key) - 1];
  else if (key === "e") { event.preventDefault(); $("replacement").focus(); }
  else if (key === "r") addEdit($("replacement").value);
  else if (key === "d" || key === "Delete") addEdit("");
  else if (key === "u") { edits.pop(); changed(); }
  else if (key === "v") review(false);
  else if (key === "c") review(true);
  else if (key === "s") submit();
  else if (key === "k") { $("skip-reason").hidden = $("skip-confirm").hidden = false; event.preventDefault(); $("skip-reason").focus(); }
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api("POST", "/api/login", {token: $("token").value});
      await loadTask();
    } catch (e) { $("login-status").textContent = e.message; }
  });
  $("answer").addEventListener("click", (event) => {
    const word = event.target.closest(".w");
    if (word) select(Number(word.dataset.i), event.shiftKey);
  });
  $("replace").addEventListener("click", () => addEdit($("replacement").value));
  $("delete").addEventListener("click", () => addEdit(""));
  $("undo").addEventListener("click", () => { edits.pop(); changed(); });
  $("review").addEventListener("click", () => review(false));
  $("correct").addEventListener("click", () => review(true));
  $("submit").addEventListener("click", submit);
  $("skip").addEventListener("click", () => { $("skip-reason").hidden = $("skip-confirm").hidden = false; $("skip-reason").focus(); });
  $("skip-confirm").addEventListener("click", skip);
  document.addEventListener("keydown", onKey);
  loadTask();
});
