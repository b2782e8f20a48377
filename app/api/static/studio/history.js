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
// Tasks this tab's streams told of (id -> {task: the latest, since: the load current when first seen}): a list read
// before a stream's last event must not put a task back to an older status, or drop one created while it was read.
const streamed = new Map();
// Tasks whose delete was confirmed (from the request on): their stream's 404 is no error, their rows stay gone.
export const deleted = new Set();
let loads = 0; // the newest loadHistory: an older one that finishes later is dropped
const RANK = { PENDING: 0, IN_PROGRESS: 1 }; // then any terminal status
const rank = (task) => RANK[task.status] ?? 2;
const further = (a, b) => rank(a) > rank(b) || (rank(a) === rank(b) && a.progress > b.progress);

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
  document.addEventListener("studio:task", (event) => {
    const task = event.detail;
    if (!deleted.has(task.id)) streamed.set(task.id, { task, since: streamed.get(task.id)?.since ?? loads });
    upsert(task, true);
  });
}

export async function loadHistory() {
  const gen = ++loads;
  const chosen = $("history-type").value;
  const first = !chosen || page === 1; // where a task created during this load belongs
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
    if (gen !== loads) return;
    status.textContent = "";
    showError("History", error);
    return;
  } finally {
    if (gen === loads) $("history-table").removeAttribute("aria-busy");
  }
  if (gen !== loads) return;
  rows.clear();
  $("history-rows").replaceChildren();
  found.sort((a, b) => b.created_at - a.created_at).forEach((task) => upsert(task, false));
  // What the streams said since: a newer status than the list's, or a task created after its list was read.
  const listed = new Map(found.map((task) => [task.id, task]));
  for (const { task, since } of streamed.values()) {
    const read = listed.get(task.id);
    if (read ? further(task, read) : first && since >= gen) upsert(task, true);
  }
  $("history-empty").hidden = rows.size > 0;
  status.textContent = rows.size ? `${rows.size} task${rows.size === 1 ? "" : "s"}` +
    (chosen ? `, page ${page}` : `: the ${PAGE} newest of each type`) : "No tasks yet.";
  $("history-pager").hidden = !chosen;
  $("history-prev").disabled = page === 1;
  $("history-next").disabled = found.length < PAGE;
}

// Add or refresh a task's row; `live` rows (from this tab's streams) go on top when new.
function upsert(task, live) {
  if (deleted.has(task.id)) return;
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
  // A repeat that skipped the redraw stored the newer task: the buttons act on that one.
  const latest = () => rows.get(id)?.task || task;
  remove.addEventListener("click", () => deleteTask(latest(), remove));
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
      el("button", { type: "button", dataset: { testid: `history-open-${id}` }, onclick: () => open(latest()),
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
  deleted.add(task.id); // before the request: the stream's 404 can arrive before its answer
  try {
    await call("DELETE", `${resource.path}/${task.id}`);
    rows.get(task.id)?.row.remove();
    rows.delete(task.id);
    streamed.delete(task.id);
    confirming.delete(task.id);
    $("history-status").textContent = `Deleted ${task.type} ${shortId(task.id)}`;
    $("history-empty").hidden = rows.size > 0;
    loadBalance();
  } catch (error) {
    deleted.delete(task.id);
    confirming.delete(task.id); // the next press asks again
    button.disabled = false;
    const known = rows.get(task.id); // its row as now shown (a stream may have redrawn it meanwhile), asking no more
    if (known) {
      const row = renderRow(known.task);
      known.row.replaceWith(row);
      known.row = row;
    }
    showError("Delete", error);
  }
}
