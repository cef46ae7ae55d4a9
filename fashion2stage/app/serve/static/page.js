// The page of `fashion2stage serve`: send the chosen photos to /v1/predict and draw what comes back.
// Everything from the server or the file names goes into the page as text (textContent), never as HTML.
"use strict";

// the overlay colours of fashion2stage/plotting.py, so the page and `predict --overlays` agree
const PALETTE = [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
                 [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212]];
const rgb = (c) => `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
let maxFiles = 8;  // replaced by the server's limit from /healthz
let serverConf = 0.25;  // the server's --conf, from /healthz: where the slider starts and goes back to on reset

const $ = (id) => document.getElementById(id);
const statusLine = $("status"), results = $("results"), progress = $("progress");
const input = $("files"), drop = $("drop"), confInput = $("conf"), confValue = $("conf-value");
const downloadButton = $("download"), resetButton = $("reset");

let current = [];  // the files last read: the slider reads them again at its new confidence
let lines = [];  // their predictions.jsonl lines, in order: what "Download JSON" saves
let run = 0;  // counts reads and resets: the answers of an older read are dropped
let active = null;  // the request in flight, aborted by a reset

function el(tag, props = {}, children = []) {
  const e = document.createElement(tag);
  Object.assign(e, props);
  for (const c of children) e.append(c);
  return e;
}

function setStatus(text, isError = false) {
  statusLine.textContent = text;
  statusLine.className = isError ? "error" : "";
}

// fraction done (0..1), or null while the server reads the photos (an indeterminate bar); hidden when idle
function setProgress(fraction) {
  progress.hidden = fraction === undefined;
  if (fraction === null) progress.removeAttribute("value");
  else if (fraction !== undefined) progress.value = fraction;
}

// a label's place: the first of a few spots around its box that covers no label placed before (else the first spot)
function placeLabel(placed, w, h, [x1, y1, x2, y2], width, height) {
  const clamp = (v, hi) => Math.min(Math.max(v, 0), Math.max(hi, 0));
  const spots = [[x1, y1 - h], [x1, y1], [x2 - w, y1], [x1, y2 - h], [x1, y2], [x2 - w, y2 - h]]
    .map(([x, y]) => [clamp(x, width - w), clamp(y, height - h)]);
  const free = spots.find(([x, y]) => !placed.some((r) => x < r[0] + r[2] && r[0] < x + w && y < r[1] + r[3] && r[1] < y + h));
  const [x, y] = free || spots[0];
  placed.push([x, y, w, h]);
  return [x, y];
}

// boxes, landmarks and numbered labels over the photo; the canvas has the photo's own pixel size (CSS scales it)
function drawOverlay(canvas, bitmap, pred) {
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0);
  // predictions are in the upright photo's pixels; scale in case the browser's decoded size differs
  const sx = bitmap.width / pred.width, sy = bitmap.height / pred.height;
  const line = Math.max(2, Math.round(Math.max(bitmap.width, bitmap.height) / 300));
  const font = 5 * line + 4;
  const colours = pred.garments.map((g, n) => rgb(PALETTE[n % PALETTE.length]));
  const boxes = pred.garments.map((g) => [g.box[0] * sx, g.box[1] * sy, g.box[2] * sx, g.box[3] * sy]);
  pred.garments.forEach((g, n) => {
    const [x1, y1, x2, y2] = boxes[n];
    ctx.strokeStyle = colours[n];
    ctx.lineWidth = line;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
  });
  pred.garments.forEach((g, n) => {
    for (const [x, y] of Object.values(g.keypoints)) {
      ctx.beginPath();
      ctx.arc(x * sx, y * sy, 2 * line + 1, 0, 2 * Math.PI);
      ctx.fillStyle = colours[n];
      ctx.fill();
      ctx.lineWidth = Math.max(1, line / 2);
      ctx.strokeStyle = "#fff";
      ctx.stroke();
    }
  });
  // labels last, so that no box or landmark hides one; the garment list beside the photo has the details
  ctx.font = `bold ${font}px system-ui, sans-serif`;
  const placed = [];
  pred.garments.forEach((g, n) => {
    const label = `${n + 1} ${g.type} ${g.score.toFixed(2)}`;
    const w = ctx.measureText(label).width + 2 * line, h = font + 2 * line;
    const [x, y] = placeLabel(placed, w, h, boxes[n], canvas.width, canvas.height);
    ctx.fillStyle = colours[n];
    ctx.fillRect(x, y, w, h);
    ctx.fillStyle = "#000";
    ctx.fillText(label, x + line, y + font);
  });
}

function attributeText(attrs) {
  return Object.entries(attrs).map(([k, a]) => `${k}: ${a.value} (${a.score.toFixed(2)})`).join(" · ");
}

// indented JSON with the arrays of numbers (boxes, probabilities, landmarks) kept on one line each
function compactJson(value) {
  return JSON.stringify(value, null, 2)
    .replace(/\[\s+([-0-9.eE+,\s]+?)\s+\]/g, (m, inner) => `[${inner.split(/,\s*/).join(", ")}]`);
}

function garmentList(pred) {
  return el("ol", {className: "garments"}, pred.garments.map((g, n) => {
    const li = el("li", {}, [
      el("span", {className: "swatch", style: `background: ${rgb(PALETTE[n % PALETTE.length])}`}),
      el("b", {textContent: `${n + 1} ${g.type}`}), ` ${g.score.toFixed(2)}`,
      el("div", {className: "attrs", textContent: attributeText(g.attributes)}),
    ]);
    li.dataset.type = g.type;
    return li;
  }));
}

async function showResult(file, pred) {
  const card = el("section", {className: "result"}, [el("h2", {textContent: pred.image})]);
  results.append(card);
  if (pred.error) {  // this file could not be read; the others of the request still are
    card.classList.add("failed");
    card.append(el("p", {className: "err", textContent: `Not read: ${pred.error}`}));
    return;
  }
  const canvas = el("canvas", {className: "overlay"});
  const side = el("div", {className: "side"}, [
    pred.garments.length ? garmentList(pred) : el("p", {textContent: "No garment found."}),
    el("p", {className: "image-attrs", textContent: "Whole photo: " + attributeText(pred.attributes)}),
    el("details", {}, [el("summary", {textContent: "JSON"}),
                       el("pre", {className: "json", textContent: compactJson(pred)})]),
  ]);
  card.append(el("div", {}, [canvas]), side);
  drawOverlay(canvas, await createImageBitmap(file), pred);
  canvas.dataset.drawn = "true";
}

// POST one chunk of files; onSent(fraction) follows the upload. Resolves to {status, body} whatever the status.
function post(files, conf, onSent) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    for (const f of files) form.append("files", f, f.name);
    const xhr = new XMLHttpRequest();
    active = xhr;
    xhr.open("POST", `v1/predict?conf=${conf}`);
    xhr.responseType = "json";
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onSent(e.loaded / e.total); };
    xhr.upload.onload = () => onSent(1);
    xhr.onload = () => resolve({status: xhr.status, body: xhr.response || {}});
    xhr.onerror = () => reject(new Error("the server could not be reached"));
    xhr.onabort = () => resolve(null);
    xhr.send(form);
  });
}

async function upload(files) {
  files = Array.from(files);
  if (!files.length) return;
  const mine = ++run;
  if (active) active.abort();
  current = files;
  lines = [];
  downloadButton.disabled = true;
  results.replaceChildren();
  const conf = Number(confInput.value).toFixed(2);
  for (let i = 0; i < files.length; i += maxFiles) {  // the server takes at most maxFiles per request
    const chunk = files.slice(i, i + maxFiles);
    const which = files.length > maxFiles ? ` (${i + 1}-${i + chunk.length} of ${files.length})` : "";
    setStatus(`Sending ${chunk.length} photo(s)${which}…`);
    setProgress(i / files.length);
    let answer;
    try {
      answer = await post(chunk, conf, (sent) => {
        if (mine !== run) return;
        if (sent < 1) setProgress((i + sent * chunk.length) / files.length);
        else { setStatus(`Reading ${chunk.length} photo(s)${which} at confidence ${conf}…`); setProgress(null); }
      });
    } catch (e) {
      answer = {status: 0, body: {error: e.message}};
    }
    if (answer === null || mine !== run) return;  // reset, or a newer read started
    const preds = answer.body.predictions;
    if (!Array.isArray(preds)) {
      setStatus(`Error: ${answer.body.error || `HTTP ${answer.status}`}`, true);
      setProgress(undefined);
      return;
    }
    for (let j = 0; j < chunk.length; j++) {
      await showResult(chunk[j], preds[j]);
      lines.push(preds[j]);
    }
    setProgress((i + chunk.length) / files.length);
  }
  active = null;
  setProgress(undefined);
  downloadButton.disabled = false;
  const garments = results.querySelectorAll("ol.garments li").length;
  const failed = lines.filter((p) => p.error).length;
  setStatus(`Done: ${files.length} photo(s), ${garments} garment(s)` + (failed ? `, ${failed} not read.` : "."),
            failed === files.length);
}

function showConf() {
  confValue.textContent = Number(confInput.value).toFixed(2);
}

function reset() {
  run++;
  if (active) active.abort();
  active = null;
  current = [];
  lines = [];
  input.value = "";
  results.replaceChildren();
  setStatus("");
  setProgress(undefined);
  downloadButton.disabled = true;
  confInput.value = serverConf;
  showConf();
}

input.addEventListener("change", () => upload(input.files));
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  upload(e.dataTransfer.files);
});
confInput.addEventListener("input", showConf);
confInput.addEventListener("change", () => { showConf(); upload(current); });  // the same photos, at the new value
resetButton.addEventListener("click", reset);
downloadButton.addEventListener("click", () => {
  const blob = new Blob(lines.map((line) => JSON.stringify(line) + "\n"), {type: "application/x-ndjson"});
  const a = el("a", {href: URL.createObjectURL(blob), download: "predictions.jsonl"});
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
});
fetch("healthz").then((r) => r.json()).then((h) => {
  if (h.limits) maxFiles = h.limits.max_files;
  if (typeof h.conf === "number") {
    serverConf = h.conf;
    if (!current.length) { confInput.value = serverConf; showConf(); }
  }
}).catch(() => {});
