// The Character tab: rig the current model, browse the animation catalogue with its previews, apply actions
// and watch them play; a motion from a sentence (text-to-motion), applied to the rigged character.

import { call } from "./api.js";
import { runTask } from "./jobs.js";
import { currentModel, showInViewer, showTask } from "./model.js";
import { $, el, shortId, showError, clearError } from "./ui.js";

const MAX_ACTIONS = 10; // per animation task (the API's limit)
let rig = null; // the SUCCEEDED rig task animations apply to
let library = [];
const picked = new Set();

export const currentRig = () => rig;

export function useRig(task) {
  rig = task;
  showTask(task, { label: "Rigged character (rest pose)" });
  $("rig-current").textContent = `Rigged: ${shortId(task.id)} (${task.consumed_credits} credits). ` +
    "Animations and motions apply to it.";
  const basic = task.result?.basic_animations || {};
  $("rig-walk").disabled = !basic.walking_glb_url;
  $("rig-run").disabled = !basic.running_glb_url;
  rigState();
}

function rigState() {
  $("animate-submit").disabled = !rig || picked.size === 0;
  $("motion-submit").disabled = !rig;
  $("animate-hint").textContent = !rig ? "Rig a character first: actions play on its skeleton."
    : picked.size ? `${picked.size} action${picked.size === 1 ? "" : "s"} picked (3 credits each).`
      : "Pick one or more actions from the catalogue.";
}

async function animate(body, label, status, button) {
  clearError();
  try {
    const task = await runTask({ label, path: "/openapi/v1/animations", body: { rig_task_id: rig.id, ...body }, status,
      button });
    if (task.status === "SUCCEEDED") showTask(task, { label });
    else showError(label, new Error(task.task_error?.message || task.status));
    return task;
  } catch (error) {
    showError(label, error);
    return null;
  }
}

function initRig() {
  $("rig-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const model = currentModel();
    clearError();
    try {
      const task = await runTask({ label: "Rigging", path: "/openapi/v1/rigging", status: $("rig-status"),
        body: { input_task_id: model.id, height_meters: Number($("rig-height").value) }, button: $("rig-submit") });
      if (task.status === "SUCCEEDED") useRig(task);
      else showError("Rigging", new Error(task.task_error?.message || task.status));
    } catch (error) {
      showError("Rigging", error);
    } finally {
      $("rig-submit").disabled = !currentModel();
    }
  });
  const basic = (kind, label) => () => showInViewer(rig.result.basic_animations[`${kind}_glb_url`],
    { animated: true, label });
  $("rig-walk").addEventListener("click", basic("walking", "Rigged character walking"));
  $("rig-run").addEventListener("click", basic("running", "Rigged character running"));
}

export async function loadLibrary() {
  $("library-status").textContent = "Loading the animation catalogue";
  try {
    ({ result: { list: library } } = await call("GET", "/openapi/v1/animations/library"));
  } catch (error) {
    $("library-status").textContent = `The catalogue could not be loaded: ${error.message}`;
    return;
  }
  const categories = [...new Set(library.map((a) => a.category))];
  $("library-category").replaceChildren(el("option", { value: "" }, "All categories"),
    ...categories.map((c) => el("option", { value: c }, c.replace(/([a-z])([A-Z])/g, "$1 $2"))));
  renderLibrary();
}

function renderLibrary() {
  const words = $("library-search").value.trim().toLowerCase();
  const category = $("library-category").value;
  const shown = library.filter((a) => (!category || a.category === category) &&
    (!words || `${a.name} ${a.sub_category} ${a.category}`.toLowerCase().includes(words)));
  $("library").replaceChildren(...shown.map((a) => {
    const preview = el("img", { src: a.preview_url, alt: "", loading: "lazy" });
    const noPreview = el("span", { class: "no-preview", hidden: true }, "no preview yet");
    preview.addEventListener("error", () => { preview.hidden = true; noPreview.hidden = false; });
    return el("li", {}, el("button", {
      type: "button", class: "action", "aria-pressed": String(picked.has(a.action_id)),
      dataset: { testid: `action-${a.action_id}` }, title: `${a.name} (${a.category}, ${a.duration_s} s)`,
      onclick: (event) => toggle(a.action_id, event.currentTarget),
    }, preview, noPreview, el("span", { class: "name" }, a.name.replace(/_/g, " "))));
  }));
  $("library-status").textContent = `${shown.length} of ${library.length} actions` +
    (shown.length ? "; previews play on the reference character" : "");
}

function toggle(actionId, button) {
  if (picked.has(actionId)) picked.delete(actionId);
  else if (picked.size < MAX_ACTIONS) picked.add(actionId);
  else {
    $("animate-hint").textContent = `At most ${MAX_ACTIONS} actions in one animation.`;
    return;
  }
  button.setAttribute("aria-pressed", String(picked.has(actionId)));
  rigState();
}

function initAnimations() {
  $("library-search").addEventListener("input", renderLibrary);
  $("library-category").addEventListener("change", renderLibrary);
  $("animate-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const ids = [...picked];
    const names = ids.map((id) => library.find((a) => a.action_id === id)?.name || id).join(", ");
    await animate(ids.length === 1 ? { action_id: ids[0] } : { action_ids: ids }, `Animation: ${names}`,
      $("animate-status"), $("animate-submit"));
    rigState();
  });
  $("animate-clear").addEventListener("click", () => {
    picked.clear();
    for (const b of document.querySelectorAll("#library [aria-pressed]")) b.setAttribute("aria-pressed", "false");
    rigState();
  });
}

function initMotion() {
  $("motion-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError();
    const prompt = $("motion-prompt").value;
    try {
      const motion = await runTask({ label: "Text to motion", path: "/openapi/v1/text-to-motion", status: $("motion-status"),
        body: { prompt, duration: Number($("motion-duration").value), mode: $("motion-mode").value,
          ai_model: $("motion-model").value }, button: $("motion-submit") });
      if (motion.status !== "SUCCEEDED") {
        showError("Text to motion", new Error(motion.task_error?.message || motion.status));
      } else {
        await animate({ motion_task_id: motion.id }, `Motion: “${prompt}”`, $("motion-status"));
      }
    } catch (error) {
      showError("Text to motion", error);
    } finally {
      rigState();
    }
  });
}

export function initCharacter() {
  initRig();
  initAnimations();
  initMotion();
  rigState();
}
