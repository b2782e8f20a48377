// The History panel: the account's tasks of every type from each resource's list endpoint, with status, cost,
// files and delete. Tasks started here are added and updated live from their streams.

import { call } from "./api.js";
import { loadBalance, resourceOfType, resources } from "./account.js";
import { downloadLinks } from "./model.js";
import { $, el, credits, shortId, showError, when } from "./ui.js";

const PAGE = 10;
const PARALLEL = 3; // list requests in flight at once (the plan's requests-per-second limit is shared)
let open = () => {};
let page = 1;
const rows = new Map(); // task id -> {task, row}
// Tasks whose Delete was pressed once: a row re-rendered by its stream or a reload keeps asking to confirm, so the
// second press lands on the same question however often the row was redrawn in between.
const confirming = new Set();

export function initHistory(openTask) {
  open = openTask;
  $("history-refresh").addEventListener("click", () => loadHistory());
  $("history-type").addEventListener("change", () => { page = 1; loadHistory(); });
  $("history-prev").addEventListener("click", () => { page = Math.max(1, page - 1); loadHistory(); });
  $("history-next").addEventListener("click", () => { page += 1; loadHistory(); });
  document.addEventListener("studio:capabilities", () => {
    const chosen = $("history-type").value;
    $("history-type").replaceChildren(el("option", { value: "" }, "All types (each type's newest)"),
      ...resources().map((r) => el("option", { value: r.resource }, r.resource)));
    $("history-type").value = chosen;
  });
  document.addEventListener("studio:task", (event) => upsert(event.detail, true));
}

export async function loadHistory() {
  const chosen = $("history-type").value;
  const targets = chosen ? resources().filter((r) => r.resource === chosen) : resources();
  const status = $("history-status");
  const found = [];
  let done = 0;
  status.textContent = `Loading the history from ${targets.length} resource list${targets.length === 1 ? "" : "s"}`;
  $("history-table").setAttribute("aria-busy", "true");
  const queue = [...targets];
  const worker = async () => {
    while (queue.length) {
      const resource = queue.shift();
      const tasks = await call("GET", `${resource.path}?page_size=${PAGE}&page_num=${chosen ? page : 1}`,
        undefined, { onWait: (text) => { status.textContent = text; } });
      found.push(...tasks);
      done += 1;
      status.textContent = `Loading the history: ${done} of ${targets.length} lists read`;
    }
  };
  try {
    await Promise.all(Array.from({ length: PARALLEL }, worker));
  } catch (error) {
    status.textContent = "";
    showError("History", error);
    return;
  } finally {
    $("history-table").removeAttribute("aria-busy");
  }
  rows.clear();
  $("history-rows").replaceChildren();
  found.sort((a, b) => b.created_at - a.created_at).forEach((task) => upsert(task, false));
  status.textContent = found.length ? `${found.length} task${found.length === 1 ? "" : "s"}` +
    (chosen ? `, page ${page}` : `: the ${PAGE} newest of each type`) : "No tasks yet.";
  $("history-pager").hidden = !chosen;
  $("history-prev").disabled = page === 1;
  $("history-next").disabled = found.length < PAGE;
}

// Add or refresh a task's row; `live` rows (from this tab's streams) go on top when new.
function upsert(task, live) {
  const chosen = $("history-type").value;
  if (live && chosen && resourceOfType(task.type)?.resource !== chosen) return;
  const known = rows.get(task.id);
  if (known && sameRow(known.task, task)) { // a stream's repeat of what is shown: nothing to redraw
    known.task = task;
    return;
  }
  const row = renderRow(task);
  if (known) known.row.replaceWith(row);
  else if (live) $("history-rows").prepend(row);
  else $("history-rows").append(row);
  rows.set(task.id, { task, row });
  $("history-empty").hidden = rows.size > 0;
}

// What a row shows of a task; two versions that agree on it draw the same row.
function shown(task) {
  return JSON.stringify([task.status, task.progress, task.consumed_credits, task.task_error?.message || "",
    downloadLinks(task, "").length]);
}

function sameRow(a, b) {
  return shown(a) === shown(b);
}

function renderRow(task) {
  const id = task.id;
  const files = downloadLinks(task, `history-file-${id}`);
  const progress = task.status === "IN_PROGRESS" || task.status === "PENDING" ? ` ${task.progress}%` : "";
  const asking = confirming.has(id);
  const remove = el("button", { type: "button", class: "danger",
    dataset: { testid: `history-delete-${id}`, confirm: asking ? "yes" : "no" } },
  asking ? "Press again to delete" : "Delete");
  remove.addEventListener("click", () => deleteTask(task, remove));
  return el("tr", { dataset: { testid: `history-row-${id}` } },
    el("td", {}, task.type, el("br"), el("span", { class: "muted mono" }, shortId(id))),
    el("td", { dataset: { testid: `history-status-${id}` }, class: `status-${task.status.toLowerCase()}` },
      task.status + progress, task.status === "FAILED" ? el("br") : "",
      task.status === "FAILED" ? el("span", { class: "muted" }, task.task_error?.message || "") : ""),
    el("td", {}, when(task.created_at)),
    el("td", { dataset: { testid: `history-cost-${id}` } }, credits(task.consumed_credits)),
    el("td", {}, files.length ? el("details", {}, el("summary", {}, `${files.length} file${files.length === 1 ? "" : "s"}`),
      el("div", { class: "files" }, ...files)) : el("span", { class: "muted" }, "none")),
    el("td", { class: "actions" },
      el("button", { type: "button", dataset: { testid: `history-open-${id}` }, onclick: () => open(task),
        disabled: task.status !== "SUCCEEDED" && task.status !== "FAILED" }, "Open"),
      remove));
}

// Deleting is for good (files too; an unfinished task's credits come back): the first press asks to confirm.
async function deleteTask(task, button) {
  if (!confirming.has(task.id)) {
    confirming.add(task.id);
    button.dataset.confirm = "yes";
    button.textContent = "Press again to delete";
    $("history-status").textContent = `Press again to delete ${task.type} ${shortId(task.id)} and its files for good.`;
    return;
  }
  const resource = resourceOfType(task.type);
  button.disabled = true;
  try {
    await call("DELETE", `${resource.path}/${task.id}`);
    rows.get(task.id)?.row.remove();
    rows.delete(task.id);
    confirming.delete(task.id);
    $("history-status").textContent = `Deleted ${task.type} ${shortId(task.id)}`;
    $("history-empty").hidden = rows.size > 0;
    loadBalance();
  } catch (error) {
    button.disabled = false;
    showError("Delete", error);
  }
}
