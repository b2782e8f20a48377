// MeshFoundry playground: a Meshy client in the browser. Creates a task with the API key, then follows it with
// EventSource using a short-lived stream token (EventSource cannot send an Authorization header).
"use strict";

const $ = (id) => document.getElementById(id);
const API = "/openapi/v2/text-to-3d";
const TERMINAL = new Set(["SUCCEEDED", "FAILED", "CANCELED"]);
let source = null;
let lastPreviewId = null;

$("api-key").value = sessionStorage.getItem("meshfoundry-key") || "";

async function call(method, path, body) {
  const key = $("api-key").value.trim();
  sessionStorage.setItem("meshfoundry-key", key);
  const response = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.message || `HTTP ${response.status}`);
  return data;
}

function show(task, viaStream = false) {
  if (viaStream) (window.meshfoundryEvents ||= []).push({ status: task.status, progress: task.progress });
  $("progress").value = task.progress;
  $("status").textContent = task.status;
  $("task-id").textContent = `${task.type} ${task.id}`;
  if (task.status === "FAILED") $("message").textContent = task.task_error?.message || "failed";
  if (task.status !== "SUCCEEDED") return;
  if (task.model_urls?.glb) $("viewer").src = task.model_urls.glb;
  const links = Object.entries(task.model_urls || {}).map(
    ([format, url]) => `<a data-testid="download-${format}" href="${url}" download>${format.toUpperCase()}</a>`,
  );
  (task.texture_urls || []).forEach((maps) =>
    Object.entries(maps).forEach(([kind, url]) =>
      links.push(`<a data-testid="download-texture-${kind}" href="${url}" download>${kind}</a>`)),
  );
  if (task.thumbnail_url) links.push(`<a data-testid="download-thumbnail" href="${task.thumbnail_url}" download>thumbnail</a>`);
  $("downloads").innerHTML = links.join("");
  if (task.type === "text-to-3d-preview") {
    lastPreviewId = task.id;
    $("refine").disabled = false;
  }
}

async function follow(taskId) {
  if (source) source.close();
  const { token } = await call("POST", "/openapi/v1/stream-tokens", { task_id: taskId });
  source = new EventSource(`${API}/${taskId}/stream?token=${encodeURIComponent(token)}`);
  source.addEventListener("message", (event) => {
    const task = JSON.parse(event.data);
    show(task, true);
    if (TERMINAL.has(task.status)) source.close();
  });
  source.addEventListener("error", (event) => {
    // Our `event: error` carries {status_code, message}; a bare network error has no data.
    if (event.data) {
      $("message").textContent = JSON.parse(event.data).message;
      source.close();
    }
  });
}

async function start(body) {
  $("message").textContent = "";
  $("progress").value = 0;
  $("status").textContent = "submitting";
  $("downloads").innerHTML = "";
  try {
    const { result } = await call("POST", API, body);
    $("status").textContent = "PENDING";
    await follow(result);
  } catch (error) {
    $("status").textContent = "error";
    $("message").textContent = error.message;
  }
}

$("create").addEventListener("submit", (event) => {
  event.preventDefault();
  $("refine").disabled = true;
  start({
    mode: "preview",
    prompt: $("prompt").value,
    ai_model: $("ai-model").value,
    seed: Number($("seed").value),
    target_polycount: Number($("target-polycount").value),
    topology: $("topology").value,
    should_remesh: $("should-remesh").checked,
  });
});

$("refine").addEventListener("click", () => {
  if (!lastPreviewId) return;
  $("refine").disabled = true;
  start({
    mode: "refine",
    preview_task_id: lastPreviewId,
    texture_prompt: $("texture-prompt").value,
    enable_pbr: $("enable-pbr").checked,
  });
});

// The models this server offers for a preview (GET /openapi/v1/models), each marked when no worker serves it now.
async function loadModels() {
  if (!$("api-key").value.trim()) return;
  try {
    const { resources } = await call("GET", "/openapi/v1/models");
    const textTo3d = resources.find((r) => r.resource === "text-to-3d");
    const models = textTo3d.models.filter((m) => m.task_type === "text-to-3d-preview");
    const select = $("ai-model");
    const chosen = select.value;
    select.innerHTML = "";
    for (const m of models) {
      const option = document.createElement("option");
      option.value = m.ai_model;
      option.textContent = `${m.ai_model} (${m.runner}, ${m.price} credits${m.worker_online ? "" : ", no worker"})`;
      select.append(option);
    }
    if (models.some((m) => m.ai_model === chosen)) select.value = chosen;
  } catch (error) {
    // an unknown key or an older server: keep the built-in list
  }
}
$("api-key").addEventListener("change", loadModels);

$("viewer").addEventListener("load", () => $("viewer").setAttribute("data-loaded", "true"));
$("viewer").addEventListener("error", (event) => { $("message").textContent = `viewer: ${event.detail?.type || "error"}`; });
