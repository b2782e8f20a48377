// The Create panel: from a prompt (preview, then refine), from one photo (drop, paste or choose), from up to four
// views, or from a prompt through pictures first (text-to-image, pick one, then image-to-3d).

import { $, el, dropZone, pictureUri, showError, clearError, urlAsDataUri } from "./ui.js";
import { runTask } from "./jobs.js";
import { currentModel, showTask } from "./model.js";
import { searchFor } from "./search.js";

const VIEW_NAMES = ["front", "right", "back", "left"];
let photo = null; // data URI of the photo to turn into a model
const views = [null, null, null, null];
let pictures = null; // the SUCCEEDED text-to-image task whose pictures are on show

export const currentPhoto = () => photo;

// Run a creation and show its result; errors go to the alert line in the API's words.
async function create(label, path, body, status, button) {
  clearError();
  try {
    const task = await runTask({ label, path, body, status, button });
    if (task.status === "SUCCEEDED") showTask(task);
    else showError(label, new Error(task.task_error?.message || task.status));
    return task;
  } catch (error) {
    showError(label, error);
    return null;
  }
}

function retrieveScore(checkbox, input) {
  return $(checkbox).checked ? Number($(input).value) : undefined;
}

function initPrompt() {
  $("prompt-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {
      mode: "preview",
      prompt: $("prompt").value,
      ai_model: $("prompt-model").value,
      target_polycount: Number($("prompt-faces").value),
      should_remesh: true,
    };
    if ($("prompt-seed").value !== "") body.seed = Number($("prompt-seed").value);
    const retrieve = retrieveScore("prompt-retrieve", "prompt-retrieve-score");
    if (retrieve !== undefined) body.retrieve_min_score = retrieve;
    await create("Text to 3D preview", "/openapi/v2/text-to-3d", body, $("prompt-status"), $("prompt-create"));
  });
  $("prompt-search").addEventListener("click", () => searchFor({ query: $("prompt").value }));
  $("prompt-retrieve").addEventListener("change", () => {
    $("prompt-retrieve-score").disabled = !$("prompt-retrieve").checked;
  });
  $("refine-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const preview = currentModel();
    await create("Text to 3D refine", "/openapi/v2/text-to-3d", {
      mode: "refine", preview_task_id: preview.id, texture_prompt: $("refine-prompt").value,
      enable_pbr: $("refine-pbr").checked,
    }, $("refine-status"), $("refine-create"));
    refineState();
  });
  document.addEventListener("studio:model", refineState);
}

function refineState() {
  const preview = currentModel()?.type === "text-to-3d-preview";
  $("refine-create").disabled = !preview;
  $("refine-hint").textContent = preview ? "" : "Refine paints a text-to-3d preview: create or open one first.";
}

async function setPhoto(file) {
  try {
    photo = await pictureUri(file);
  } catch (error) {
    showError("Photo", error);
    return;
  }
  clearError();
  $("photo-preview").src = photo;
  $("photo-preview").hidden = false;
  $("photo-name").textContent = file.name ? `${file.name} (${Math.round(file.size / 1024)} KB)` : "pasted picture";
  $("photo-create").disabled = false;
  document.dispatchEvent(new CustomEvent("studio:photo"));
}

function initPhoto() {
  dropZone($("photo-drop"), $("photo-file"), setPhoto);
  $("photo-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!photo) return;
    const body = { image_url: photo, should_texture: $("photo-texture").checked, multi_view_thumbnails: true };
    const retrieve = retrieveScore("photo-retrieve", "photo-retrieve-score");
    if (retrieve !== undefined) body.retrieve_min_score = retrieve;
    await create("Image to 3D", "/openapi/v1/image-to-3d", body, $("photo-status"), $("photo-create"));
  });
  $("photo-retrieve").addEventListener("change", () => {
    $("photo-retrieve-score").disabled = !$("photo-retrieve").checked;
  });
}

function viewsState() {
  const filled = views.map(Boolean);
  const count = filled.filter(Boolean).length;
  const gap = filled.indexOf(false) >= 0 && filled.lastIndexOf(true) > filled.indexOf(false);
  $("views-create").disabled = count === 0 || gap;
  $("views-hint").textContent = gap ? "Fill the views in order (front, then right, back, left): the API reads them so."
    : count ? `${count} view${count === 1 ? "" : "s"} ready.` : "Add at least the front view.";
}

function initViews() {
  VIEW_NAMES.forEach((name, i) => {
    const set = async (file) => {
      try {
        views[i] = await pictureUri(file);
      } catch (error) {
        showError(`${name} view`, error);
        return;
      }
      $(`view-${i}-preview`).src = views[i];
      $(`view-${i}-preview`).hidden = false;
      $(`view-${i}-clear`).hidden = false;
      viewsState();
    };
    dropZone($(`view-${i}-drop`), $(`view-${i}-file`), set);
    $(`view-${i}-clear`).addEventListener("click", () => {
      views[i] = null;
      $(`view-${i}-preview`).hidden = true;
      $(`view-${i}-clear`).hidden = true;
      viewsState();
    });
  });
  $("views-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { image_urls: views.filter(Boolean), should_texture: true, multi_view_thumbnails: true };
    await create("Multi-image to 3D", "/openapi/v1/multi-image-to-3d", body, $("views-status"), $("views-create"));
    viewsState();
  });
  viewsState();
}

// A text-to-image task's pictures, to pick from (also used when the history opens one).
export function showPictures(task) {
  pictures = task;
  const urls = task.image_urls || [];
  $("pictures").replaceChildren(...urls.map((url, i) => el("label", { class: "pick" },
    el("input", { type: "radio", name: "picture", value: String(i), checked: i === 0, dataset: { testid: `picture-${i}` } }),
    el("img", { src: url, alt: `Picture ${i + 1} for “${task.prompt || ""}”` }),
    el("span", {}, urls.length === 3 ? VIEW_NAMES[i] : `picture ${i + 1}`))));
  $("picture-to-3d").disabled = urls.length === 0;
  $("pictures-to-3d").disabled = urls.length < 2;
  $("tab-image").click();
}

function initPictures() {
  $("image-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { ai_model: $("image-model").value, prompt: $("image-prompt").value,
      generate_multi_view: $("image-views").checked, aspect_ratio: "1:1" };
    clearError();
    const task = await runTask({ label: "Text to image", path: "/openapi/v1/text-to-image", body,
      status: $("image-status"), button: $("image-create") })
      .catch((error) => { showError("Text to image", error); return null; });
    if (task?.status === "SUCCEEDED") showPictures(task);
    else if (task) showError("Text to image", new Error(task.task_error?.message || task.status));
  });
  // One picture: the task itself is the input; one of a set: that picture's bytes (image-to-3d takes one image).
  $("picture-to-3d").addEventListener("click", async () => {
    const urls = pictures.image_urls;
    const index = Number(document.querySelector('input[name="picture"]:checked')?.value || 0);
    $("picture-to-3d").disabled = true;
    let body;
    try {
      body = urls.length === 1 ? { input_task_id: pictures.id } : { image_url: await urlAsDataUri(urls[index]) };
    } catch (error) {
      showError("Image to 3D", error);
      $("picture-to-3d").disabled = false;
      return;
    }
    await create("Image to 3D", "/openapi/v1/image-to-3d", { ...body, multi_view_thumbnails: true },
      $("pictures-status"), $("picture-to-3d"));
  });
  $("pictures-to-3d").addEventListener("click", async () => {
    await create("Multi-image to 3D", "/openapi/v1/multi-image-to-3d",
      { input_task_id: pictures.id, multi_view_thumbnails: true }, $("pictures-status"), $("pictures-to-3d"));
  });
}

// Pasting a picture anywhere puts it where the open tab wants one: the photo, or the next empty view.
function initPaste() {
  document.addEventListener("paste", (event) => {
    const file = [...(event.clipboardData?.files || [])].find((f) => f.type.startsWith("image/"));
    if (!file) return;
    if (!$("create-photo").hidden) {
      event.preventDefault();
      setPhoto(file);
    } else if (!$("create-views").hidden) {
      const slot = views.indexOf(null);
      if (slot < 0) return;
      event.preventDefault();
      const dt = new DataTransfer();
      dt.items.add(file);
      $(`view-${slot}-file`).files = dt.files;
      $(`view-${slot}-file`).dispatchEvent(new Event("change"));
    }
  });
}

export function initCreate() {
  initPrompt();
  initPhoto();
  initViews();
  initPictures();
  initPaste();
  refineState();
}
