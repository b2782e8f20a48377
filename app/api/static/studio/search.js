// The Search panel: find existing models (POST /openapi/v1/assets/search) before generating, and reuse one.
// Reusing your own generated model opens its task (free); a library asset becomes a task of yours through
// retrieve-before-generate (a text-to-3d preview answered from that asset at once, at the `retrieved` price).

import { call } from "./api.js";
import { priceOf } from "./account.js";
import { runTask } from "./jobs.js";
import { showTask } from "./model.js";
import { $, el, credits, showError, clearError } from "./ui.js";

const GENERATED = ["/openapi/v2/text-to-3d", "/openapi/v1/image-to-3d", "/openapi/v1/multi-image-to-3d"];
let photoOf = () => null;

export function initSearch(currentPhoto) {
  photoOf = currentPhoto;
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    searchFor({ query: $("search-query").value, withPhoto: $("search-photo").checked });
  });
  document.addEventListener("studio:photo", () => {
    $("search-photo").disabled = false;
    $("search-photo-hint").textContent = "";
  });
}

export async function searchFor({ query, withPhoto = false }) {
  $("search-query").value = query;
  const body = { query: query.trim() || undefined, top_k: 8 };
  if (withPhoto && photoOf()) body.image_url = photoOf();
  const status = $("search-status");
  status.textContent = "Searching your models and the shared libraries";
  $("search-results").replaceChildren();
  $("search-results").setAttribute("aria-busy", "true");
  clearError();
  try {
    const { results } = await call("POST", "/openapi/v1/assets/search", body,
      { onWait: (text) => { status.textContent = text; } });
    status.textContent = results.length
      ? `${results.length} match${results.length === 1 ? "" : "es"}, best first`
      : "No existing model matches: generate one.";
    $("search-results").replaceChildren(...results.map((hit, i) => hitCard(hit, i, query)));
    $("search-results").scrollIntoView({ block: "nearest" }); // "Search first" sits above: bring the answer in sight
  } catch (error) {
    // 503 without pgvector: the server's sentence says exactly that; generation still works.
    if (error.status === 503) status.textContent = `Search is unavailable here: ${error.message}. You can still generate.`;
    else status.textContent = showError("Search", error);
    status.scrollIntoView({ block: "nearest" });
  } finally {
    $("search-results").removeAttribute("aria-busy");
  }
}

function hitCard(hit, index, query) {
  const own = Boolean(hit.task_id);
  const price = priceOf("text-to-3d-preview", "retrieved");
  const label = own ? "Reuse (your model, free)" : `Reuse as a task (${price === null ? "?" : credits(price)})`;
  return el("li", { class: "hit", dataset: { testid: `hit-${index}` } },
    hit.thumbnail_url ? el("img", { src: hit.thumbnail_url, alt: `Thumbnail of ${hit.caption || "a model"}` }) : "",
    el("div", {},
      el("p", { class: "caption", dataset: { testid: `hit-${index}-caption` } }, hit.caption || "(no caption)"),
      el("p", { class: "muted" }, `score ${hit.score.toFixed(2)} · ${own ? "your model" : `library “${hit.collection}”`}`),
      el("button", { type: "button", dataset: { testid: `hit-${index}-reuse` },
        onclick: (event) => reuse(hit, query, event.currentTarget) }, label)));
}

async function reuse(hit, query, button) {
  button.disabled = true;
  const status = $("search-status");
  clearError();
  try {
    if (hit.task_id) {
      status.textContent = "Opening your model";
      showTask(await findTask(hit.task_id));
      status.textContent = "Reused your model: it is in the viewer and ready for the tools.";
    } else {
      // The asset's own caption scores ~1 against itself, so this preview is answered from that very asset.
      const task = await runTask({ label: "Reuse from the library", path: GENERATED[0], status,
        body: { mode: "preview", prompt: hit.caption || query, retrieve_min_score: Math.min(0.95, hit.score) } });
      showTask(task);
    }
  } catch (error) {
    showError("Reuse", error);
  } finally {
    button.disabled = false;
  }
}

// A generated model's task: it lives under one of the three generation resources (the others answer 404).
async function findTask(taskId) {
  for (const path of GENERATED) {
    try {
      return await call("GET", `${path}/${taskId}`);
    } catch (error) {
      if (error.status !== 404) throw error;
    }
  }
  throw new Error("Task not found");
}
