// Small DOM helpers shared by the studio's panels: elements, tabs, the alert line, files as data URIs.

import { explain } from "./api.js";

export const $ = (id) => document.getElementById(id);

// el("button", {type: "button", dataset: {testid: "x"}, onclick}, "text", child...)
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name in node && typeof value !== "string") node[name] = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children.filter((c) => c !== undefined && c !== null && c !== false));
  return node;
}

// The page's one alert line: what was being done, then the API's own words. A task deleted while it ran (runTask
// marks its error `deleted`) is no failure: its card says so, and the alert line stays as it is.
export function showError(context, error) {
  const text = `${context}: ${explain(error)}`;
  if (error.deleted) return text;
  $("alert").textContent = text;
  $("alert").hidden = false;
  return text;
}

export function clearError() {
  $("alert").textContent = "";
  $("alert").hidden = true;
}

// WAI-ARIA tabs: click or arrow keys move between tabs; only the selected tab is in the tab order.
export function tabs(tablist, onChange) {
  const all = [...tablist.querySelectorAll('[role="tab"]')];
  const select = (tab, focus) => {
    for (const t of all) {
      const selected = t === tab;
      t.setAttribute("aria-selected", String(selected));
      t.tabIndex = selected ? 0 : -1;
      $(t.getAttribute("aria-controls")).hidden = !selected;
    }
    if (focus) tab.focus();
    onChange?.(tab);
  };
  tablist.addEventListener("click", (event) => {
    const tab = event.target.closest('[role="tab"]');
    if (tab) select(tab, false);
  });
  tablist.addEventListener("keydown", (event) => {
    const index = all.indexOf(document.activeElement);
    if (index < 0) return;
    const moves = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 };
    if (event.key in moves) {
      select(all[(index + moves[event.key] + all.length) % all.length], true);
      event.preventDefault();
    } else if (event.key === "Home" || event.key === "End") {
      select(all[event.key === "Home" ? 0 : all.length - 1], true);
      event.preventDefault();
    }
  });
  select(all.find((t) => t.getAttribute("aria-selected") === "true") || all[0], false);
}

const readAs = (blob) => new Promise((resolve, reject) => {
  const reader = new FileReader();
  reader.onload = () => resolve(reader.result);
  reader.onerror = () => reject(reader.error);
  reader.readAsDataURL(blob);
});

// A picture file as a data URI the API takes (PNG or JPEG); other formats the browser can decode become PNG.
export async function pictureUri(file) {
  if (file.type === "image/png" || file.type === "image/jpeg") return readAs(file);
  if (!file.type.startsWith("image/")) throw new Error(`${file.name || "the pasted item"} is not a picture`);
  const bitmap = await createImageBitmap(file).catch(() => {
    throw new Error(`${file.name || "the picture"}: this browser cannot read ${file.type}`);
  });
  const canvas = el("canvas", { width: bitmap.width, height: bitmap.height });
  canvas.getContext("2d").drawImage(bitmap, 0, 0);
  return canvas.toDataURL("image/png");
}

// A same-origin URL (an asset of ours) as a data URI, to hand a picture to another task.
export async function urlAsDataUri(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`could not read the picture (HTTP ${response.status})`);
  return readAs(await response.blob());
}

// A drop zone: a dropped file, or one chosen with the zone's file input, goes to onFile.
export function dropZone(zone, input, onFile) {
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    const file = event.dataTransfer?.files?.[0];
    if (file) onFile(file);
  });
  input.addEventListener("change", () => {
    if (input.files[0]) onFile(input.files[0]);
    input.value = "";
  });
}

// UUIDv7 ids share their leading (time) digits: the tail tells tasks apart.
export const shortId = (id) => `…${id.slice(-8)}`;

export const credits = (n) => `${n} credit${n === 1 ? "" : "s"}`;

export function when(ms) {
  return ms ? new Date(ms).toLocaleString([], { dateStyle: "short", timeStyle: "short" }) : "";
}
