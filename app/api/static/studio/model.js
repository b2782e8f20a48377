// The model panel: the vendored model-viewer, the task's thumbnail views, turntable video, downloads, and what the
// task says beyond files (retrieved_from, the printability report, the parts of a segmentation).

import { $, el, credits, when } from "./ui.js";

// Part k's colour in a segmentation without keep_material (inference/pipeline/parts_export.py PALETTE).
const PALETTE = [
  [230, 25, 75], [60, 180, 75], [0, 130, 200], [245, 130, 48], [145, 30, 180], [70, 240, 240], [240, 50, 230],
  [210, 245, 60], [250, 190, 212], [0, 128, 128], [220, 190, 255], [170, 110, 40], [255, 250, 200], [128, 0, 0],
  [170, 255, 195], [128, 128, 0], [255, 215, 180], [0, 0, 128], [128, 128, 128], [255, 225, 25], [100, 149, 237],
  [255, 99, 71], [46, 139, 87], [218, 165, 32], [106, 90, 205], [199, 21, 133], [72, 209, 204], [244, 164, 96],
  [154, 205, 50], [176, 196, 222], [139, 69, 19], [255, 20, 147],
];
const VIEWS = ["front", "right", "back", "left"];
const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

let model = null; // the model task operations apply to: a SUCCEEDED model task with a GLB
export const currentModel = () => model;
const ownLook = new Set(); // segmentations asked for with keep_material: their parts are not palette-coloured
export const keepsMaterial = (taskId) => ownLook.add(taskId);

// Every file of a task, any shape (model_urls, textures, thumbnails, video, images, parts, nested result URLs).
export function filesOf(task) {
  const files = [];
  const add = (name, url) => url && files.push({ name, url });
  for (const [format, url] of Object.entries(task.model_urls || {})) add(format, url);
  (task.texture_urls || []).forEach((maps) => Object.entries(maps).forEach(([kind, url]) => add(`texture ${kind}`, url)));
  add("thumbnail", task.thumbnail_url);
  add("alpha thumbnail", task.alpha_thumbnail_url);
  add("turntable video", task.video_url);
  (task.image_urls || []).forEach((url, i) => add(`image ${i + 1}`, url));
  (task.parts?.part_urls || []).forEach((url, i) => add(`part ${i}`, url));
  add("part labels", task.parts?.labels_url);
  const walk = (object, prefix) => {
    for (const [key, value] of Object.entries(object || {})) {
      if (value && typeof value === "object") walk(value, `${prefix}${key.replace(/_/g, " ")} `);
      else if (key.endsWith("_url") && typeof value === "string") add(prefix + key.slice(0, -4).replace(/_/g, " "), value);
    }
  };
  walk(task.result, "");
  return files;
}

const slug = (name) => name.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "");

export function downloadLinks(task, prefix = "download") {
  return filesOf(task).map(({ name, url }) => {
    const ext = new URL(url, location.href).pathname.split(".").pop();
    return el("a", { href: url, download: `${task.type}-${task.id.slice(-8)}-${slug(name)}.${ext}`,
      dataset: { testid: `${prefix}-${slug(name)}` } }, name);
  });
}

export function glbOf(task) {
  const r = task.result || {};
  return task.model_urls?.glb || r.animation_glb_url || r.rigged_character_glb_url || "";
}

// Show a file in the viewer; `animated` plays its clips (an animation, a rig's walk).
export function showInViewer(url, { animated = false, label = "" } = {}) {
  const viewer = $("viewer");
  viewer.toggleAttribute("autoplay", animated);
  $("viewer-label").textContent = label;
  if (!url || (viewer.src === url && viewer.loaded)) return; // already on show: no new load event will come
  viewer.removeAttribute("data-loaded");
  viewer.src = url;
}

// Render a task in the panel. A model task with a GLB becomes the model that operations apply to.
export function showTask(task, { label } = {}) {
  const glb = glbOf(task);
  const animated = task.type === "animate";
  if (task.status === "SUCCEEDED" && task.model_urls?.glb) {
    model = task;
    document.dispatchEvent(new CustomEvent("studio:model", { detail: task }));
  }
  const meta = [task.type, task.status, credits(task.consumed_credits), when(task.created_at)];
  $("model-meta").replaceChildren(
    el("strong", { dataset: { testid: "shown-type" } }, task.type), " ",
    el("span", { class: "muted", dataset: { testid: "shown-id" } }, task.id), " · ",
    el("span", { dataset: { testid: "shown-status" } }, meta[1]), ` · ${meta[2]} · ${meta[3]}`,
    task.retrieved_from ? el("span", { class: "badge", dataset: { testid: "retrieved-from" } },
      `reused: ${task.retrieved_from.collection} asset, score ${task.retrieved_from.score.toFixed(2)}`) : "",
  );
  if (glb) showInViewer(glb, { animated, label: label || "" });
  else if (task.status === "SUCCEEDED") {
    $("viewer-label").textContent = "This result has no GLB: the viewer still shows the model it was made from.";
  }
  renderViews(task);
  renderVideo(task);
  $("downloads").replaceChildren(...downloadLinks(task));
  renderExtras(task);
}

function renderViews(task) {
  const views = task.thumbnail_urls
    ? VIEWS.filter((v) => task.thumbnail_urls[v]).map((v) => [v, task.thumbnail_urls[v]])
    : task.thumbnail_url ? [["thumbnail", task.thumbnail_url]] : [];
  $("views").replaceChildren(...views.map(([view, url]) => el("figure", {},
    el("img", { src: url, alt: `${view} view of the model`, loading: "lazy", dataset: { testid: `view-${view}` } }),
    el("figcaption", {}, view))));
}

function renderVideo(task) {
  const video = $("turntable");
  video.hidden = !task.video_url;
  if (task.video_url) video.src = task.video_url;
  else video.removeAttribute("src");
}

function renderExtras(task) {
  const box = $("extras");
  box.replaceChildren();
  if (task.status === "FAILED") {
    box.append(el("p", { class: "error", dataset: { testid: "shown-error" } }, `Failed: ${task.task_error?.message || ""}`));
  }
  if (task.printability) box.append(printability(task.printability));
  if (task.parts) box.append(partsLegend(task));
}

function printability(report) {
  const m = report.metrics || {};
  const facts = [["watertight", m.is_watertight ? "yes" : "no"], ["volume", m.volume], ["holes", m.holes],
    ["non-manifold edges", m.non_manifold_edges], ["degenerate faces", m.degenerate_faces]]
    .filter(([, v]) => v !== undefined && v !== null);
  return el("section", { class: "report", dataset: { testid: "printability" } },
    el("h3", {}, "Printability: ", el("span", { class: `status-${report.status}`, dataset: { testid: "printability-status" } },
      report.status), ` (${plural(report.error_count, "error")}, ${plural(report.warning_count, "warning")})`),
    el("dl", {}, ...facts.flatMap(([k, v]) => [el("dt", {}, k),
      el("dd", {}, typeof v === "number" && !Number.isInteger(v) ? v.toPrecision(4) : String(v))])),
    report.issues?.length ? el("ul", {}, ...report.issues.map((i) => el("li", {}, `${i.severity}: ${i.message}`))) : "",
  );
}

// The parts of a segmentation or completion: a swatch per part (the file's own part colours), its share of the
// faces, and a button that shows the part alone. The labels file gives each part's face count.
function partsLegend(task) {
  const parts = task.parts;
  const list = el("ol", { class: "parts", dataset: { testid: "parts-legend" } });
  const section = el("section", { class: "report" },
    el("h3", {}, `${parts.num_parts} parts`, parts.watertight ? `, ${parts.watertight.filter(Boolean).length} watertight` : ""),
    el("p", { class: "muted" }, ownLook.has(task.id)
      ? "The parts keep the model's own look; pick one to see it alone."
      : "Each part has its own colour in the viewer; pick one to see it alone."),
    list,
    el("button", { type: "button", dataset: { testid: "parts-all" }, onclick: () => showInViewer(task.model_urls.glb,
      { label: "All parts" }) }, "Show all parts"));
  parts.part_urls.forEach((url, i) => {
    const [r, g, b] = PALETTE[i % PALETTE.length];
    list.append(el("li", {},
      ownLook.has(task.id) ? "" : el("span", { class: "swatch", style: `background: rgb(${r} ${g} ${b})`, "aria-hidden": "true" }),
      el("button", { type: "button", class: "link", dataset: { testid: `part-${i}` },
        onclick: () => showInViewer(url, { label: `Part ${i} alone` }) }, `Part ${i}`),
      el("span", { class: "muted", dataset: { testid: `part-${i}-faces` } }),
      parts.watertight ? el("span", { class: "muted" }, parts.watertight[i] ? " watertight" : " open") : ""));
  });
  if (parts.labels_url) {
    fetch(parts.labels_url).then((r) => r.json()).then((labels) => {
      const total = labels.parts.reduce((sum, p) => sum + p.faces, 0) || 1;
      labels.parts.forEach((p) => {
        const cell = list.querySelector(`[data-testid="part-${p.id}-faces"]`);
        if (cell) cell.textContent = ` ${p.faces} faces (${Math.round((100 * p.faces) / total)}%)`;
      });
    }).catch(() => {});
  }
  return section;
}

// The viewer reports what it loaded: its clips (listed for playing), and a flag tests and people can see.
export function initViewer() {
  const viewer = $("viewer");
  viewer.addEventListener("load", () => {
    const clips = viewer.availableAnimations || [];
    viewer.dataset.animations = String(clips.length);
    $("clip").replaceChildren(...clips.map((c) => el("option", { value: c }, c)));
    $("clip-controls").hidden = clips.length === 0;
    if (clips.length && viewer.hasAttribute("autoplay")) viewer.play();
    $("clip-toggle").textContent = viewer.paused ? "Play" : "Pause";
    viewer.setAttribute("data-loaded", "true");
    $("viewer-state").textContent = "";
  });
  viewer.addEventListener("progress", (event) => {
    const p = event.detail?.totalProgress ?? 1;
    $("viewer-state").textContent = p < 1 ? `Loading the model into the viewer: ${Math.round(p * 100)}%` : "";
  });
  viewer.addEventListener("error", (event) => {
    $("viewer-state").textContent = `The viewer could not show this file (${event.detail?.type || "error"})`;
  });
  viewer.addEventListener("play", () => { $("clip-toggle").textContent = "Pause"; });
  viewer.addEventListener("pause", () => { $("clip-toggle").textContent = "Play"; });
  $("clip").addEventListener("change", () => {
    viewer.animationName = $("clip").value;
    viewer.play();
  });
  $("clip-toggle").addEventListener("click", () => (viewer.paused ? viewer.play() : viewer.pause()));
}
