// Running a task from the browser: create it, follow its stream, and say at every moment what it is waiting for.
// Each task gets a card in the Activity list (aria-live) and mirrors its words into the form that started it.

import { TERMINAL, call, follow } from "./api.js";
import { loadBalance, poolOf } from "./account.js";
import { deleted } from "./history.js";
import { $, el, credits } from "./ui.js";

// What a task is doing, in words: queue position, a pool without workers, progress, the API's failure message.
export function describe(task, label, waitedS = null) {
  const elapsed = task.started_at ? Math.max(0, Math.round((Date.now() - task.started_at) / 1000)) : null;
  const waited = waitedS === null ? "" : ` (${waitedS} s)`;
  switch (task.status) {
    case "PENDING": {
      if (task.preceding_tasks > 0) {
        const ahead = `${task.preceding_tasks} task${task.preceding_tasks === 1 ? "" : "s"}`;
        return `${label}: queued, ${ahead} ahead of it${waited}`;
      }
      const pool = poolOf(task.type, task.ai_model);
      if (pool && !pool.online) return `${label}: waiting, no worker serves the ${pool.pool} pool right now${waited}`;
      return `${label}: waiting for a worker${pool ? ` of the ${pool.pool} pool` : ""} to pick it up${waited}`;
    }
    case "IN_PROGRESS":
      return `${label}: running, ${task.progress}%${elapsed !== null ? ` (${elapsed} s)` : ""}`;
    case "SUCCEEDED":
      return `${label}: done (${credits(task.consumed_credits)})`;
    case "FAILED":
      return `${label} failed: ${task.task_error?.message || "no reason given"}`;
    default:
      return `${label}: ${task.status}`;
  }
}

// Create a task at `path` with `body` and follow it to the end. Resolves with the terminal task (any status);
// rejects with the API's error when the create or the stream is refused (marked `deleted`, which showError keeps
// off the alert line, when the History deleted the task while it ran: its card says so). `status` is the form's own
// status line; `button` is off only while the request is sent, so another task can start while this one runs.
export async function runTask({ label, path, body, status, onUpdate, button }) {
  const bar = el("progress", { max: 100, value: 0, dataset: { testid: "job-progress" } });
  const words = el("span", { class: "words", dataset: { testid: "job-status" } }, `${label}: sending the request`);
  const card = el("li", { class: "job", dataset: { testid: "job" } }, words, bar);
  $("jobs").prepend(card);
  $("jobs-empty").hidden = true;
  const say = (text) => {
    words.textContent = text;
    if (status) status.textContent = text;
  };
  // Screen readers hear each change of state once, not the running counters.
  const announce = (text) => { $("announce").textContent = text; };
  say(`${label}: sending the request`);
  announce(`${label}: sending the request`);
  if (button) button.disabled = true;
  let id;
  try {
    try {
      ({ result: id } = await call("POST", path, body, { onWait: (text) => say(`${label}: ${text}`) }));
    } finally {
      if (button) button.disabled = false;
    }
    card.dataset.taskId = id;
    loadBalance();
    let last = null;
    const started = Date.now();
    const waited = () => Math.round((Date.now() - started) / 1000);
    const tick = setInterval(() => {
      if (last && !TERMINAL.has(last.status)) say(describe(last, label, waited()));
    }, 1000);
    try {
      const task = await follow(path, id, (t) => {
        if (t.status !== last?.status) announce(describe(t, label));
        last = t;
        bar.value = t.progress;
        card.dataset.status = t.status;
        say(describe(t, label, waited()));
        onUpdate?.(t);
        document.dispatchEvent(new CustomEvent("studio:task", { detail: t }));
      }, { onWait: (text) => say(`${label}: ${text}`) });
      card.classList.add(task.status === "SUCCEEDED" ? "done" : "failed");
      if (task.status !== "SUCCEEDED") loadBalance(); // a failed task's credits came back
      return task;
    } finally {
      clearInterval(tick);
    }
  } catch (error) {
    if (error.status === 404 && deleted.has(id)) {
      card.dataset.status = "DELETED";
      say(`${label}: deleted from the History`);
      announce(`${label}: deleted from the History`);
      error.deleted = true;
      throw error;
    }
    card.classList.add("failed");
    say(`${label} refused: ${error.message}`);
    announce(`${label} refused: ${error.message}`);
    throw error;
  }
}
