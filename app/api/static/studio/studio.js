// MeshFoundry studio: every task resource in the browser. Plain ES modules served by the API (no build step, no
// CDN); the key stays in this tab (sessionStorage), and every request goes to this same server.

import { getKey, setKey } from "./api.js";
import { loadBalance, loadCapabilities } from "./account.js";
import { initCharacter, loadLibrary, useRig } from "./character.js";
import { currentPhoto, initCreate, showPictures } from "./create.js";
import { initHistory, loadHistory } from "./history.js";
import { initViewer, showTask } from "./model.js";
import { initOperations } from "./operations.js";
import { initParts } from "./parts.js";
import { initSearch } from "./search.js";
import { $, clearError, showError, tabs } from "./ui.js";

// Opening a task from the history: each kind goes where it is worked on.
function openTask(task) {
  clearError();
  if (task.type === "text-to-image" || task.type === "image-to-image") showPictures(task);
  else if (task.type === "rig" && task.status === "SUCCEEDED") useRig(task);
  else showTask(task);
  $("viewer-panel").scrollIntoView({ behavior: "smooth", block: "start" });
}

// With a key: what the server offers, the balance, the catalogue and the history.
async function start() {
  if (!getKey()) {
    $("key-status").textContent = "Paste an API key to start (the development key is printed by `meshfoundry up`).";
    return;
  }
  $("key-status").textContent = "Checking the key";
  try {
    await loadCapabilities();
  } catch (error) {
    $("key-status").textContent = "";
    showError("API key", error);
    return;
  }
  clearError();
  $("key-status").textContent = `key …${getKey().slice(-4)} (this tab only)`;
  document.body.dataset.ready = "true";
  await Promise.all([loadBalance(), loadLibrary(), loadHistory()]);
}

function init() {
  $("api-key").value = getKey();
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setKey($("api-key").value);
    start();
  });
  tabs($("create-tabs"));
  tabs($("tool-tabs"));
  initViewer();
  initCreate();
  initSearch(currentPhoto);
  initOperations();
  initCharacter();
  initParts();
  initHistory(openTask);
  start();
}

init();
