// The page of `fashion2stage serve`: send the chosen photos to /v1/predict and draw what comes back.
// Everything from the server or the file names goes into the page as text (textContent), never as HTML.
"use strict";

// the overlay colours of fashion2stage/plotting.py, so the page and `predict --overlays` agree
const PALETTE = [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
                 [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212]];
const rgb = (c) => `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
let maxFiles = 8;  // replaced by the server's limit from /healthz

const statusLine = document.getElementById("status");
const results = document.getElementById("results");

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
  if (pred.error) {
    card.append(el("p", {className: "err", textContent: pred.error}));
    return;
  }
  const canvas = el("canvas", {className: "overlay"});
  const side = el("div", {}, [
    pred.garments.length ? garmentList(pred) : el("p", {textContent: "No garment found."}),
    el("p", {className: "image-attrs", textContent: "Whole photo: " + attributeText(pred.attributes)}),
    el("details", {open: true}, [el("summary", {textContent: "JSON"}),
                       el("pre", {className: "json", textContent: JSON.stringify(pred, null, 2)})]),
  ]);
  card.append(el("div", {}, [canvas]), side);
  drawOverlay(canvas, await createImageBitmap(file), pred);
  canvas.dataset.drawn = "true";
}

async function upload(files) {
  files = Array.from(files);
  if (!files.length) return;
  results.replaceChildren();
  for (let i = 0; i < files.length; i += maxFiles) {  // the server takes at most maxFiles per request
    const chunk = files.slice(i, i + maxFiles);
    setStatus(`Reading ${chunk.length} photo(s)${files.length > maxFiles ? ` (${i + 1}-${i + chunk.length} of ${files.length})` : ""}…`);
    const form = new FormData();
    for (const f of chunk) form.append("files", f, f.name);
    let body;
    try {
      const response = await fetch("v1/predict", {method: "POST", body: form});
      body = await response.json();
      if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
    } catch (e) {
      setStatus(`Error: ${e.message}`, true);
      return;
    }
    for (let j = 0; j < chunk.length; j++) await showResult(chunk[j], body.predictions[j]);
  }
  const n = results.querySelectorAll("ol.garments li").length;
  setStatus(`Done: ${files.length} photo(s), ${n} garment(s).`);
}

const drop = document.getElementById("drop");
const input = document.getElementById("files");
input.addEventListener("change", () => upload(input.files));
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  upload(e.dataTransfer.files);
});
fetch("healthz").then((r) => r.json()).then((h) => { if (h.limits) maxFiles = h.limits.max_files; }).catch(() => {});
