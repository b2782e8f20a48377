// The account bar: balance, and what this server can run (GET /openapi/v1/models: models, pools, live workers).

import { call } from "./api.js";
import { $, el, credits, showError } from "./ui.js";

let capabilities = { resources: [], pools: {}, workers: [] };

export const resources = () => capabilities.resources;
export const resourceOfType = (type) => capabilities.resources.find((r) => r.task_types.includes(type));

// The models a task type offers, e.g. modelsFor("text-to-image").
export function modelsFor(taskType) {
  return capabilities.resources.flatMap((r) => r.models).filter((m) => m.task_type === taskType);
}

// The price of a task type in credits (the default model's, or a variant's), or null when unknown.
export function priceOf(taskType, variant) {
  const model = modelsFor(taskType).find((m) => m.ai_model === "latest") || modelsFor(taskType)[0];
  if (!model) return null;
  return variant ? model.price_variants?.[variant] ?? model.price : model.price;
}

// Why a PENDING task of this type may wait: its pool has no live worker right now.
export function poolOf(taskType, aiModel) {
  const models = modelsFor(taskType);
  const model = models.find((m) => m.ai_model === aiModel) || models.find((m) => m.ai_model === "latest") || models[0];
  return model ? { pool: model.pool, online: capabilities.pools[model.pool] !== false && model.worker_online } : null;
}

// ", textured 30, retrieved 2": what a body's options change the price to.
const variants = (m) => Object.entries(m.price_variants || {}).map(([v, p]) => `, ${v} ${p}`).join("");

export async function loadBalance() {
  try {
    const { balance } = await call("GET", "/openapi/v1/balance");
    $("balance").textContent = `Balance: ${credits(balance)}`;
  } catch (error) {
    $("balance").textContent = "Balance: unknown";
    showError("Balance", error);
  }
}

export async function loadCapabilities() {
  $("pools").textContent = "Workers: asking the server";
  capabilities = await call("GET", "/openapi/v1/models");
  const pools = Object.entries(capabilities.pools);
  $("pools").replaceChildren(
    "Workers: ",
    ...pools.flatMap(([pool, online], i) => [
      i ? ", " : "",
      el("span", { class: online ? "online" : "offline", dataset: { testid: `pool-${pool}` } },
        `${pool} ${online ? "online" : "offline"}`),
    ]),
  );
  const rows = capabilities.resources.flatMap((r) => r.models.map((m) => el("tr", {},
    el("td", {}, r.resource), el("td", {}, m.task_type), el("td", {}, m.ai_model), el("td", {}, m.runner),
    el("td", {}, m.pool), el("td", {}, m.worker_online ? "yes" : "no worker now"),
    el("td", {}, credits(m.price) + variants(m)),
  )));
  $("capabilities-rows").replaceChildren(...rows);
  const live = capabilities.workers.length;
  $("capabilities-summary").textContent = `${capabilities.resources.length} resources, ${rows.length} models; ` +
    `${live ? `${live} GPU worker${live === 1 ? "" : "s"} reporting` : "CPU reference workers"}`;
  fillModels($("prompt-model"), "text-to-3d-preview", "latest");
  fillModels($("image-model"), "text-to-image", null);
  fillModels($("motion-model"), "text-to-motion", "latest", false); // the mode sets its price
  const [prime, swift] = [priceOf("text-to-motion"), priceOf("text-to-motion", "swift")];
  if (prime !== null) {
    $("motion-mode").options[0].textContent = `swift (BVH, ${credits(swift)})`;
    $("motion-mode").options[1].textContent = `prime (FBX, ${credits(prime)})`;
  }
  document.dispatchEvent(new CustomEvent("studio:capabilities"));
}

function fillModels(select, taskType, preferred, withPrice = true) {
  const models = modelsFor(taskType);
  if (!models.length) return;
  const chosen = select.value;
  select.replaceChildren(...models.map((m) => el("option", { value: m.ai_model },
    `${m.ai_model} (${m.runner}${withPrice ? `, ${credits(m.price)}` : ""}${m.worker_online ? "" : ", no worker now"})`)));
  const keep = models.find((m) => m.ai_model === chosen) || models.find((m) => m.ai_model === preferred);
  if (keep) select.value = keep.ai_model;
}
