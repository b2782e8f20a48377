// The Operations tab: Meshy's model operations on the current model (remesh, convert, resize, retexture,
// UV unwrap, print analyse / repair / multi-colour 3MF), each a form with its main options.

import { runTask } from "./jobs.js";
import { currentModel, showTask } from "./model.js";
import { $, shortId, showError, clearError } from "./ui.js";

const checked = (name) => [...document.querySelectorAll(`input[name="${name}"]:checked`)].map((i) => i.value);

// form id -> [label, path, body from the form]
const OPERATIONS = {
  "op-remesh": ["Remesh", "/openapi/v1/remesh", () => ({
    target_polycount: Number($("remesh-faces").value), topology: $("remesh-topology").value,
    target_formats: $("remesh-formats").value.split(","),
  })],
  "op-convert": ["Convert", "/openapi/v1/convert", () => ({ target_formats: checked("convert-format") })],
  "op-resize": ["Resize", "/openapi/v1/resize", () => ({
    resize_height: Number($("resize-height").value), origin_at: $("resize-origin").value,
  })],
  "op-retexture": ["Retexture", "/openapi/v1/retexture", () => ({
    text_style_prompt: $("retexture-prompt").value, enable_pbr: $("retexture-pbr").checked,
  })],
  "op-uv": ["UV unwrap", "/openapi/v1/uv-unwrap", () => ({})],
  "op-analyze": ["Print analysis", "/openapi/v1/print/analyze", () => ({})],
  "op-repair": ["Print repair", "/openapi/v1/print/repair", () => ({})],
  "op-multicolor": ["Multi-colour 3MF", "/openapi/v1/print/multi-color", () => ({
    max_colors: Number($("multicolor-colors").value), max_depth: Number($("multicolor-depth").value),
  })],
};

export function initOperations() {
  for (const [id, [label, path, params]] of Object.entries(OPERATIONS)) {
    const form = $(id);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const model = currentModel();
      if (!model) return;
      const button = form.querySelector("button[type=submit]");
      clearError();
      try {
        const task = await runTask({ label, path, body: { input_task_id: model.id, ...params() },
          status: $("ops-status"), button });
        if (task.status === "SUCCEEDED") showTask(task, { label: `${label} of ${model.type}` });
        else showError(label, new Error(task.task_error?.message || task.status));
      } catch (error) {
        showError(label, error);
      } finally {
        button.disabled = !currentModel();
      }
    });
  }
  document.addEventListener("studio:model", modelState);
  modelState();
}

// Operations need a model: say which one they will apply to, or why they are off.
export function modelState() {
  const model = currentModel();
  for (const button of document.querySelectorAll("[data-needs-model]")) button.disabled = !model;
  const text = model ? `Works on the current model: ${model.type} ${shortId(model.id)}`
    : "Create, reuse or open a model first: the tools work on the current model.";
  for (const hint of document.querySelectorAll(".model-hint")) hint.textContent = text;
}
