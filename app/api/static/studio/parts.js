// The Parts tab: cut the current model into parts (shown in colours, each part viewable alone), and make the
// parts of a segmentation whole (part completion).

import { runTask } from "./jobs.js";
import { currentModel, keepsMaterial, showTask } from "./model.js";
import { $, showError, clearError } from "./ui.js";

async function run(label, path, body, button) {
  clearError();
  try {
    const task = await runTask({ label, path, body, status: $("parts-status"), button,
      onUpdate: (t) => t.status === "SUCCEEDED" && body.keep_material && keepsMaterial(t.id) });
    if (task.status === "SUCCEEDED") showTask(task, { label });
    else showError(label, new Error(task.task_error?.message || task.status));
  } catch (error) {
    showError(label, error);
  } finally {
    partsState();
  }
}

function partsState() {
  const model = currentModel();
  $("segment-submit").disabled = !model;
  $("complete-submit").disabled = model?.type !== "mesh-segmentation";
  $("complete-hint").textContent = model?.type === "mesh-segmentation" ? ""
    : "Completion takes a segmentation: segment the model first (or open one from the history).";
}

export function initParts() {
  $("segment-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const body = { input_task_id: currentModel().id, keep_material: $("segment-material").checked };
    if ($("segment-count").value) body.num_parts = Number($("segment-count").value);
    run("Segmentation", "/openapi/v1/mesh-segmentation", body, $("segment-submit"));
  });
  $("complete-form").addEventListener("submit", (event) => {
    event.preventDefault();
    run("Part completion", "/openapi/v1/part-completion", { input_task_id: currentModel().id },
      $("complete-submit"));
  });
  document.addEventListener("studio:model", partsState);
  partsState();
}
