// The cxrseg page: send the chosen X-ray to /api/v1/segment and show what comes back.
// Every figure is written into the element whose data-field names it (the names of Segmentation.to_dict()).
// Downloads are named as `cxrseg predict` names its files: STEM_lung.png, STEM_infection.png, STEM_overlay.png.
// A server started with an API key answers 401: the page then asks for the key once, keeps it in sessionStorage
// (this tab only) and sends it as "Authorization: Bearer KEY" with every API call.
"use strict";

const KEY_STORAGE = "cxrseg-api-key";
let pendingKey = null; // the open key dialog's answer, shared by every call waiting on it

const FORMATS = {
  pct: (v) => `${v.toFixed(1)} %`,
  probability: (v) => `${(100 * v).toFixed(1)} %`,
  decimal1: (v) => v.toFixed(1), // the severity score: always one decimal, 0.0 included
  decimal3: (v) => v.toFixed(3), // each lung's density, 0-1
  plain: (v) => String(v),
};

const blobUrls = [];

/** Text for one figure: its format applied, or a dash when the value is missing. */
function formatFigure(value, format) {
  if (value === null || value === undefined) return "—";
  return (FORMATS[format] || FORMATS.plain)(value);
}

/** Show a message under the drop zone; errors are styled and announced the same way. */
function setStatus(text, state) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.dataset.state = state;
  document.body.dataset.state = state;
}

/** An object URL for base64 PNG text (data URLs are slow and capped for large masks). */
function pngUrl(base64) {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  const url = URL.createObjectURL(new Blob([bytes], { type: "image/png" }));
  blobUrls.push(url);
  return url;
}

function releaseUrls() {
  while (blobUrls.length) URL.revokeObjectURL(blobUrls.pop());
}

/** Fill the page from one /api/v1/segment answer. */
function showResult(result) {
  releaseUrls();
  for (const el of document.querySelectorAll("[data-field]")) {
    el.textContent = formatFigure(result.figures[el.dataset.field], el.dataset.format);
  }
  const images = result.images;
  const stem = result.figures.file.replace(/\.[^.]*$/, "") || "xray";
  document.getElementById("original").src = pngUrl(images.original);
  const overlayUrl = pngUrl(images.overlay);
  document.getElementById("overlay").src = overlayUrl;
  setDownload("download-lung", pngUrl(images.lung_mask), `${stem}_lung.png`);
  setDownload("download-infection", pngUrl(images.infection_mask), `${stem}_infection.png`);
  setDownload("download-overlay", overlayUrl, `${stem}_overlay.png`);
  document.getElementById("results").hidden = false;
}

function setDownload(id, url, filename) {
  const link = document.getElementById(id);
  link.href = url;
  link.download = filename;
}

/** The server's error message, whether FastAPI sent a string or a list of validation errors. */
function errorText(body, status) {
  const detail = body && body.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) return detail.map((d) => d.msg).join("; ");
  return `the server answered HTTP ${status}`;
}

/** Ask for the API key in the page's dialog; resolves to the key, or null when cancelled. */
function askForKey(message) {
  if (pendingKey) return pendingKey;
  const dialog = document.getElementById("key-dialog");
  const input = document.getElementById("key-input");
  document.getElementById("key-message").textContent = message;
  input.value = "";
  pendingKey = new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      pendingKey = null;
      resolve(dialog.returnValue === "ok" && input.value ? input.value.trim() : null);
    }, { once: true });
  });
  dialog.returnValue = "";
  dialog.showModal();
  return pendingKey;
}

/** fetch() for /api/v1 with the kept key; on 401 ask for the key (again, if the kept one was refused) and retry. */
async function apiFetch(url, options = {}) {
  for (;;) {
    const key = sessionStorage.getItem(KEY_STORAGE);
    const headers = new Headers(options.headers || {});
    if (key) headers.set("Authorization", `Bearer ${key}`);
    const response = await fetch(url, { ...options, headers });
    if (response.status !== 401) return response;
    if (key) sessionStorage.removeItem(KEY_STORAGE);
    const entered = await askForKey(
      key ? "That key was not accepted. Enter the server's API key." : "This server needs an API key.");
    if (entered === null) return response; // cancelled: the caller shows the server's 401 message
    sessionStorage.setItem(KEY_STORAGE, entered);
  }
}

/** Upload one file and show its result, or say what went wrong. */
async function segment(file) {
  setStatus(`Segmenting ${file.name}…`, "busy");
  const body = new FormData();
  body.append("file", file);
  const status = document.getElementById("covid-status").value;
  try {
    const response = await apiFetch(`/api/v1/segment?covid_status=${encodeURIComponent(status)}`, { method: "POST", body });
    const answer = await response.json().catch(() => null);
    if (!response.ok) throw new Error(errorText(answer, response.status));
    showResult(answer);
    await Promise.all(["original", "overlay"].map((id) => document.getElementById(id).decode()));
    setStatus(`Done in ${Math.round(answer.elapsed_ms)} ms.`, "done");
  } catch (error) {
    setStatus(`Could not segment ${file.name}: ${error.message}`, "error");
  }
}

/** Show the upload limit and the models in use, from the health and model endpoints. */
async function showServiceInfo() {
  try {
    const health = await (await fetch("/api/v1/health")).json();
    document.getElementById("limit").textContent = String(health.max_upload_mb);
    const models = await (await apiFetch("/api/v1/models")).json();
    document.getElementById("models").textContent =
      `Models: ${models.lung.name}, ${models.infection.name} (${health.backend}).`;
  } catch (error) {
    // The page still works without this information.
  }
}

function setUpDropZone() {
  const drop = document.getElementById("drop");
  const input = document.getElementById("file");
  input.addEventListener("change", () => {
    const file = input.files[0];
    input.value = ""; // so that choosing the same file again uploads it again
    if (file) segment(file);
  });
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (event) => {
      event.preventDefault();
      drop.classList.add("dragging");
    });
  }
  for (const type of ["dragleave", "drop"]) {
    drop.addEventListener(type, () => drop.classList.remove("dragging"));
  }
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    const file = event.dataTransfer.files[0];
    if (file) segment(file);
  });
  // A file dropped beside the zone should not make the browser navigate away from the page.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());
}

document.addEventListener("DOMContentLoaded", () => {
  setUpDropZone();
  showServiceInfo();
});
