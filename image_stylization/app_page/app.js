"use strict";
// The page of image_stylization_app. It uses only this server's REST API (the one scripts use).
// While a slider moves it asks for preview-size images, one request at a time with the newest
// settings (settings passed over while a request runs are dropped, not queued, so previews never
// lag behind the hand); when the slider is released it asks for the result at the chosen size.
// Every change bumps `state.version`; an image is shown only if it is not older than what is shown.
// Styles come in two kinds that one blend cannot mix: the N-style model's named styles, and
// paintings dropped here (the arbitrary-style network); tiles of the other kind are disabled
// while the blend holds styles.

const $ = (id) => document.getElementById(id);
const RANK = {none: -1, photo: 0, preview: 1, frame: 1, result: 2};

const state = {
  config: null,
  styles: [],      // entries of GET /api/styles: {key, index, name, kind, thumbnail, painting}
  blend: [],       // [{entry, weight}] in the order picked; weights are the sliders' 0..100
  photo: null,     // {file, preview, name, width, height}; preview: a <= preview_size PNG or null
  version: 0,
  shown: {version: -1, kind: "none"},
  imageUrl: null,  // object URL on screen
  resultUrl: null, // object URL behind the download link
  webcam: null,    // {stream, frames}
};

// Round-trip times the page measured (ms), read by tests and the latency report.
const stats = {previewMs: [], resultMs: [], frameMs: []};
window.imageStylizationStats = stats;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function setStatus(text, isError = false) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

async function apiError(response) {
  try {
    const body = await response.json();
    return body.error || `${response.status} ${response.statusText}`;
  } catch (e) {
    return `${response.status} ${response.statusText}`;
  }
}

async function getJson(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(await apiError(response));
  return response.json();
}

// ------------------------------------------------------------------ settings as the CLI spells them

function styleKey(entry) {
  // Named styles by index; paintings by their quoted key ("painting:<hash>").
  return entry.kind === "named" ? String(entry.index) : JSON.stringify(entry.key);
}

function blendKind() {
  return state.blend.length ? state.blend[0].entry.kind : null;
}

function paintingsOn() {
  return state.config.style_kinds.includes("painting");
}

// Python's os.path.splitext: the last dot not among the leading ones.
function splitext(name) {
  const leading = name.match(/^\.*/)[0].length;
  const dot = name.lastIndexOf(".");
  return dot >= leading && dot > 0 ? [name.slice(0, dot), name.slice(dot)] : [name, ""];
}

// Python's round(): halves to even (round(62.5) == 62).
function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

function per1000(weight) {
  // How the CLI writes a normalized weight in a file name: round(1000 * w), three digits.
  return String(roundHalfEven(weight * 1000)).padStart(3, "0");
}

function totalWeight() {
  return state.blend.reduce((sum, b) => sum + b.weight, 0);
}

function whichStyles() {
  // The sliders' values as they are: the server normalizes them to sum 1, as the CLI does.
  return `{${state.blend.map((b) => `${styleKey(b.entry)}: ${b.weight}`).join(", ")}}`;
}

function strength() {
  return Number($("strength").value) / 100;
}

function maxSize() {
  const chosen = Number($("size").value);
  if (chosen !== 0) return chosen;
  const limit = state.config.max_size_limit;
  const photo = state.photo;
  // 0 asks for full size, which the server refuses above its limit.
  return photo && photo.width && Math.max(photo.width, photo.height) <= limit ? 0 : limit;
}

function shellQuote(text) {
  return /^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replace(/'/g, "'\\''")}'`;
}

// The CLI's `style_images.stems`: unique stems (a.jpg, a.png -> a_jpg, a_png; then an index).
function cliStems(names) {
  const raw = names.map((n) => splitext(n)[0]);
  const out = raw.map((s, i) => raw.filter((r) => r === s).length > 1 ?
    `${s}_${splitext(names[i])[1].replace(/^\./, "").toLowerCase()}` : s);
  return out.map((s, i) => out.filter((o) => o === s).length > 1 ? `${s}_${i}` : s);
}

function describeBlend() {
  // The CLI's output name for a blend (image_stylization_transform's output_names).
  const total = totalWeight() || 1;
  if (blendKind() === "painting") {
    // --style_images dict: "stylized_" then each painting's stem and weight, in dict order; the
    // weights are normalized in float32 (arbitrary.blend_weights).
    const stems = cliStems(state.blend.map((b) => b.entry.name));
    return "stylized_" + state.blend.map((b, i) =>
      `${stems[i]}_${per1000(Math.fround(Math.fround(b.weight) / Math.fround(total)))}`).join("_");
  }
  // --which_styles dict: sorted indices, round(1000 * normalized weight).
  return [...state.blend]
    .sort((a, b) => a.entry.index - b.entry.index)
    .map((b) => `${b.entry.index}_${per1000(b.weight / total)}`)
    .join("_");
}

function downloadName() {
  const name = state.photo ? state.photo.name : "image";
  const stem = splitext(name)[0] || "image";
  return `${stem}_${describeBlend() || "stylized"}.png`;
}

function pythonString(text) {
  return `'${text.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
}

function shellDoubleQuote(text) {
  return `"${text.replace(/[\\"$`]/g, (c) => `\\${c}`)}"`;
}

function styleImages() {
  // The CLI's --style_images blend: the paintings' file names, the sliders' weights.
  return `{${state.blend.map((b) => `${pythonString(b.entry.name)}: ${b.weight}`).join(", ")}}`;
}

function updateCommand() {
  const paintings = blendKind() === "painting";
  const which = whichStyles();
  const flag = paintings ? `--style_images=${shellDoubleQuote(styleImages())}` : `--which_styles="${which}"`;
  $("which-styles").textContent = flag;
  const args = ["image_stylization_transform"];
  const checkpoint = paintings ? state.config.arbitrary_checkpoint : state.config.checkpoint;
  if (checkpoint) args.push(`--checkpoint=${shellQuote(checkpoint)}`);
  args.push(`--input_image=${shellQuote(state.photo ? state.photo.name : "photo.jpg")}`);
  args.push("--output_dir=out", flag);
  if (strength() !== 1) args.push(`--strength=${strength()}`);
  if ($("preserve").checked) args.push("--preserve_color");
  args.push(`--max_size=${maxSize()}`);
  $("command-line").textContent = args.join(" \\\n    ");
}

// ------------------------------------------------------------------ requests

async function requestImage(source, size, filename, signal) {
  const form = new FormData();
  form.append("image", source, filename);
  form.append("styles", whichStyles());
  form.append("strength", String(strength()));
  form.append("preserve_color", $("preserve").checked ? "true" : "false");
  form.append("max_size", String(size));
  const start = performance.now();
  const response = await fetch("/api/stylize", {method: "POST", body: form, signal});
  if (!response.ok) throw new Error(await apiError(response));
  const blob = await response.blob();
  return {blob, ms: performance.now() - start, size: response.headers.get("X-Image-Size") || ""};
}

function ready() {
  return state.photo && state.blend.length > 0 && totalWeight() > 0;
}

const preview = {busy: false, wanted: false};

function schedulePreview() {
  preview.wanted = true;
  if (!preview.busy) runPreviews();
}

async function runPreviews() {
  preview.busy = true;
  while (preview.wanted && ready() && !state.webcam) {
    preview.wanted = false;
    const version = state.version;
    const photo = state.photo;
    try {
      const r = await requestImage(photo.preview || photo.file, state.config.preview_size,
                                   photo.preview ? "preview.png" : photo.name);
      stats.previewMs.push(r.ms);
      if (show(r.blob, "preview", version)) {
        setCaption(`Preview · ${r.size} px · ${Math.round(r.ms)} ms`);
      }
    } catch (e) {
      setStatus(e.message, true);
    }
  }
  preview.busy = false;
}

let resultAbort = null;

async function requestResult() {
  if (resultAbort) resultAbort.abort();
  const controller = new AbortController();
  resultAbort = controller;
  const version = state.version;
  setStatus("Rendering the result…");
  try {
    const r = await requestImage(state.photo.file, maxSize(), state.photo.name, controller.signal);
    if (version !== state.version) return; // the settings moved on while it ran
    stats.resultMs.push(r.ms);
    show(r.blob, "result", version);
    setCaption(`Result · ${r.size} px · ${(r.ms / 1000).toFixed(2)} s`);
    enableDownload(r.blob);
    setStatus("Done. Move a slider to change the blend.");
  } catch (e) {
    if (e.name !== "AbortError") setStatus(e.message, true);
  } finally {
    if (resultAbort === controller) resultAbort = null;
  }
}

// ------------------------------------------------------------------ what is on screen

function setCaption(text) {
  $("caption").textContent = text;
}

function show(blob, kind, version) {
  const shown = state.shown;
  const newer = version > shown.version ||
    (version === shown.version && (RANK[kind] > RANK[shown.kind] || kind === "frame"));
  if (!newer) return false;
  const img = $("result");
  if (state.imageUrl && state.imageUrl !== state.resultUrl) URL.revokeObjectURL(state.imageUrl);
  state.imageUrl = URL.createObjectURL(blob);
  img.src = state.imageUrl;
  img.dataset.kind = kind;
  img.dataset.version = String(version);
  const counter = {preview: "previews", result: "results", frame: "frames"}[kind];
  if (counter) img.dataset[counter] = String(Number(img.dataset[counter]) + 1);
  img.alt = kind === "photo" ? "Your photo" : `Your photo in ${state.blend.map((b) => b.entry.name).join(" + ")}`;
  $("placeholder").hidden = true;
  state.shown = {version, kind};
  return true;
}

function showPhoto() {
  const photo = state.photo;
  if (!photo) return;
  if (photo.preview) {
    show(photo.file, "photo", state.version);
    setCaption(`${photo.name} · ${photo.width}×${photo.height} px`);
  } else {
    $("placeholder").textContent = `${photo.name}: this browser cannot show it; pick a style to see it stylized.`;
    $("placeholder").hidden = false;
  }
}

function disableDownload() {
  const link = $("download");
  link.setAttribute("aria-disabled", "true");
  link.removeAttribute("href");
}

function enableDownload(blob) {
  if (state.resultUrl && state.resultUrl !== state.imageUrl) URL.revokeObjectURL(state.resultUrl);
  state.resultUrl = URL.createObjectURL(blob);
  const link = $("download");
  link.href = state.resultUrl;
  link.download = downloadName();
  link.setAttribute("aria-disabled", "false");
}

// ------------------------------------------------------------------ changes

// phase: "drag" (a slider moves: preview), "release" (slider let go: result), "now" (both).
function settingsChanged(phase) {
  state.version++;
  disableDownload();
  updateCommand();
  updateShares();
  if (state.webcam) return; // the next frame uses the new settings
  if (!state.photo) return;
  if (!state.blend.length) {
    showPhoto();
    return;
  }
  if (totalWeight() === 0) {
    setStatus("Set at least one weight above 0.", true);
    return;
  }
  if (phase === "drag") setStatus(`Previewing at ${state.config.preview_size} px; let go for the full result.`);
  if (phase !== "release") schedulePreview();
  if (phase !== "drag") {
    preview.wanted = false; // the result is on its way
    requestResult();
  }
}

function onSlider(input, apply) {
  input.addEventListener("input", () => { apply(); settingsChanged("drag"); });
  input.addEventListener("change", () => { apply(); settingsChanged("release"); });
}

function updateKinds() {
  // One blend, one network: tiles of the other kind are disabled while the blend has members.
  const kind = blendKind();
  document.querySelectorAll(".gallery button[data-key]").forEach((button) => {
    const other = kind !== null && button.dataset.kind !== kind;
    button.disabled = other;
    button.title = other ? `${button.dataset.name}: a blend takes either the model's styles or paintings` : button.dataset.name;
  });
  const why = "A blend takes either the model's styles or paintings, not both: they are two different networks.";
  $("paintings-note").hidden = kind !== "named" || !state.styles.some((e) => e.kind === "painting");
  $("paintings-note").textContent = `${why} Remove the model's styles from the blend to use a painting.`;
  $("styles-note").hidden = kind !== "painting";
  $("styles-note").textContent = `${why} Remove the paintings from the blend to use these.`;
  $("strength-hint").textContent = kind === "painting" ?
    "For paintings: from the photo's own style (0%) to the paintings' (100%); it mixes style embeddings, not pixels." :
    "Mix of the stylized and the original pixels.";
}

function updateShares() {
  updateKinds();
  const total = totalWeight();
  document.querySelectorAll("#blend li").forEach((li, i) => {
    const b = state.blend[i];
    li.querySelector(".share").textContent = total ? `${Math.round((100 * b.weight) / total)}%` : "0%";
  });
  $("strength-value").textContent = `${$("strength").value}%`;
  const n = state.blend.length;
  const max = state.config.max_blend;
  $("blend-hint").textContent = n === 0 ? `pick 2–${max} styles or paintings below` :
    n === 1 ? "add a second one to blend" : `${n} of at most ${max}`;
  document.querySelectorAll(".gallery button[data-key]").forEach((button) => {
    button.setAttribute("aria-pressed", String(state.blend.some((b) => b.entry.key === button.dataset.key)));
  });
}

function renderBlend() {
  const list = $("blend");
  list.replaceChildren();
  state.blend.forEach((b) => {
    const li = document.createElement("li");
    const thumb = new Image();
    thumb.src = b.entry.thumbnail;
    thumb.alt = "";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = b.entry.name;
    name.title = b.entry.name;
    const share = document.createElement("span");
    share.className = "share";
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "×";
    remove.setAttribute("aria-label", `Remove ${b.entry.name}`);
    remove.addEventListener("click", () => toggleStyle(b.entry));
    const right = document.createElement("span");
    right.append(share, " ", remove);
    const slider = document.createElement("input");
    slider.type = "range";
    slider.min = "0";
    slider.max = "100";
    slider.value = String(b.weight);
    slider.setAttribute("aria-label", `Weight of ${b.entry.name}`);
    onSlider(slider, () => { b.weight = Number(slider.value); });
    li.append(thumb, name, right, slider);
    list.append(li);
  });
}

function toggleStyle(entry) {
  const at = state.blend.findIndex((b) => b.entry.key === entry.key);
  if (at >= 0) {
    state.blend.splice(at, 1);
  } else {
    if (blendKind() !== null && blendKind() !== entry.kind) {
      setStatus("A blend takes either the model's styles or paintings, not both.", true);
      return;
    }
    if (state.blend.length >= state.config.max_blend) {
      setStatus(`A blend holds at most ${state.config.max_blend} styles: remove one first.`, true);
      return;
    }
    state.blend.push({entry, weight: 50});
  }
  renderBlend();
  settingsChanged("now");
}

function styleTile(entry) {
  const li = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.dataset.key = entry.key;
  button.dataset.kind = entry.kind;
  button.dataset.name = entry.name;
  button.title = entry.name;
  button.setAttribute("aria-pressed", "false");
  const img = new Image();
  img.src = entry.thumbnail;
  img.alt = "";
  const label = document.createElement("span");
  label.className = "label";
  label.textContent = entry.kind === "named" ? `${entry.index} ${entry.name}` : entry.name;
  button.append(img);
  if (entry.painting) {
    const painting = new Image();
    painting.src = entry.painting;
    painting.alt = "";
    painting.className = "painting";
    button.append(painting);
  }
  button.append(label);
  button.addEventListener("click", () => toggleStyle(entry));
  li.append(button);
  return li;
}

function renderGallery() {
  $("gallery").replaceChildren(...state.styles.filter((e) => e.kind === "named").map(styleTile));
  const paintings = $("painting-gallery");
  const drop = paintings.firstElementChild; // the "Drop a painting" tile stays first
  paintings.replaceChildren(drop, ...state.styles.filter((e) => e.kind === "painting").map(styleTile));
}

function renderSizes() {
  const select = $("size");
  const {max_size_limit: limit, default_max_size: fallback} = state.config;
  const sizes = [...new Set([512, 1024, 2048, fallback])].filter((s) => s <= limit).sort((a, b) => a - b);
  for (const s of sizes) select.append(new Option(`${s} px`, String(s), false, s === fallback));
  select.append(new Option(`Original (up to ${limit} px)`, "0"));
}

// ------------------------------------------------------------------ photos and the camera

function scaledBlob(source, width, height, longest, type, quality) {
  const scale = Math.min(1, longest / Math.max(width, height));
  const canvas = document.createElement("canvas");
  canvas.width = Math.max(1, Math.round(width * scale));
  canvas.height = Math.max(1, Math.round(height * scale));
  const context = canvas.getContext("2d");
  context.imageSmoothingQuality = "high";
  context.drawImage(source, 0, 0, canvas.width, canvas.height);
  return new Promise((resolve) => canvas.toBlob(resolve, type, quality));
}

async function setPhoto(file, name) {
  const limitMb = state.config.max_upload_mb;
  if (file.size > limitMb * 1048576) {
    setStatus(`${name} is ${(file.size / 1048576).toFixed(1)} MB; this server takes at most ${limitMb} MB (--max_upload_mb).`, true);
    return;
  }
  let previewBlob = null;
  let width = 0;
  let height = 0;
  try {
    const bitmap = await createImageBitmap(file); // EXIF orientation applied, as the server does
    width = bitmap.width;
    height = bitmap.height;
    previewBlob = await scaledBlob(bitmap, width, height, state.config.preview_size, "image/png");
    bitmap.close();
  } catch (e) {
    // Not decodable here (TIFF, say): the server still reads it; previews send the file itself.
  }
  state.photo = {file, preview: previewBlob, name, width, height};
  setStatus(state.blend.length ? "Stylizing…" : "Now pick styles below.");
  settingsChanged("now");
}

async function addPainting(file) {
  const limitMb = state.config.max_upload_mb;
  if (file.size > limitMb * 1048576) {
    setStatus(`${file.name} is ${(file.size / 1048576).toFixed(1)} MB; this server takes at most ${limitMb} MB (--max_upload_mb).`, true);
    return;
  }
  setStatus(`Reading the style of ${file.name}…`);
  let entry;
  try {
    const form = new FormData();
    form.append("painting", file, file.name);
    const response = await fetch("/api/paintings", {method: "POST", body: form});
    if (!response.ok) throw new Error(await apiError(response));
    entry = await response.json();
  } catch (e) {
    setStatus(e.message, true);
    return;
  }
  let known = state.styles.find((e) => e.key === entry.key);
  if (!known) {
    known = entry;
    state.styles.push(entry);
    renderGallery();
    updateShares();
  }
  // Dropped to be used: into the blend, unless it holds the model's styles or is full.
  if (state.blend.some((b) => b.entry.key === known.key)) {
    setStatus(`${known.name} is already in the blend.`);
  } else if (blendKind() === "named") {
    setStatus(`${known.name} added to the paintings; the blend holds the model's styles, which do not mix with paintings.`);
  } else if (state.blend.length >= state.config.max_blend) {
    setStatus(`${known.name} added to the paintings; the blend is full (${state.config.max_blend}).`);
  } else {
    setStatus(state.photo ? "Stylizing…" : `${known.name} is in the blend; now choose a photo.`);
    toggleStyle(known);
  }
}

async function startWebcam() {
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({video: {width: {ideal: 640}, height: {ideal: 480}}, audio: false});
  } catch (e) {
    setStatus(`No camera: ${e.message}`, true);
    return;
  }
  const video = $("video");
  video.srcObject = stream;
  video.hidden = false;
  await video.play();
  const cam = {stream, frames: 0};
  state.webcam = cam;
  state.version++;
  disableDownload();
  $("webcam").textContent = "Stop webcam";
  $("snapshot").hidden = false;
  setStatus(state.blend.length ? "Webcam: stylizing every frame at preview size." : "Webcam: pick styles below.");
  webcamLoop(cam);
}

async function webcamLoop(cam) {
  const video = $("video");
  const size = state.config.preview_size;
  while (state.webcam === cam) {
    if (state.blend.length === 0 || totalWeight() === 0 || video.readyState < 2) {
      await sleep(100);
      continue;
    }
    const version = state.version;
    try {
      const frame = await scaledBlob(video, video.videoWidth, video.videoHeight, size, "image/jpeg", 0.92);
      const r = await requestImage(frame, size, "webcam.jpg");
      if (state.webcam !== cam) break;
      cam.frames++;
      stats.frameMs.push(r.ms);
      show(r.blob, "frame", version);
      setCaption(`Webcam · ${r.size} px · ${Math.round(r.ms)} ms per frame`);
    } catch (e) {
      setStatus(e.message, true);
      await sleep(500);
    }
  }
}

function stopWebcam() {
  const cam = state.webcam;
  if (!cam) return;
  state.webcam = null;
  cam.stream.getTracks().forEach((track) => track.stop());
  const video = $("video");
  video.srcObject = null;
  video.hidden = true;
  $("webcam").textContent = "Webcam";
  $("snapshot").hidden = true;
}

async function snapshot() {
  const video = $("video");
  const blob = await scaledBlob(video, video.videoWidth, video.videoHeight, Infinity, "image/png");
  stopWebcam();
  await setPhoto(new File([blob], "webcam.png", {type: "image/png"}), "webcam.png");
}

async function cameraAvailable() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) return false;
  try {
    const devices = await navigator.mediaDevices.enumerateDevices();
    return devices.some((d) => d.kind === "videoinput");
  } catch (e) {
    return false;
  }
}

// ------------------------------------------------------------------ start

function wireInputs() {
  $("file").addEventListener("change", () => {
    const file = $("file").files[0];
    if (file) setPhoto(file, file.name);
  });
  $("demo").addEventListener("click", async () => {
    try {
      const response = await fetch("/api/demo.jpg");
      if (!response.ok) throw new Error(await apiError(response));
      const blob = await response.blob();
      await setPhoto(new File([blob], "astronaut.jpg", {type: "image/jpeg"}), "astronaut.jpg");
    } catch (e) {
      setStatus(e.message, true);
    }
  });
  const paintingZone = $("paintings");
  const paintingDrop = $("painting-drop");
  $("painting-file").addEventListener("change", () => {
    const input = $("painting-file");
    const files = [...input.files];
    input.value = ""; // choosing the same file again still fires "change"
    files.reduce((done, file) => done.then(() => addPainting(file)), Promise.resolve());
  });
  // A file dropped on the paintings section is a painting; anywhere else, the photo.
  paintingZone.addEventListener("dragover", (e) => {
    e.preventDefault();
    e.stopPropagation();
    paintingDrop.classList.add("over");
  });
  paintingZone.addEventListener("dragleave", (e) => {
    if (!paintingZone.contains(e.relatedTarget)) paintingDrop.classList.remove("over");
  });
  paintingZone.addEventListener("drop", (e) => {
    e.preventDefault();
    e.stopPropagation();
    paintingDrop.classList.remove("over");
    const files = e.dataTransfer ? [...e.dataTransfer.files] : [];
    files.reduce((done, file) => done.then(() => addPainting(file)), Promise.resolve());
  });
  const drop = $("drop");
  // Anywhere on the page: a photo dropped outside the zone must not replace the page.
  document.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  document.addEventListener("dragleave", (e) => { if (!e.relatedTarget) drop.classList.remove("over"); });
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const file = e.dataTransfer && e.dataTransfer.files[0];
    if (file) setPhoto(file, file.name);
  });
  onSlider($("strength"), () => {});
  $("preserve").addEventListener("change", () => settingsChanged("now"));
  $("size").addEventListener("change", () => settingsChanged("release"));
  $("webcam").addEventListener("click", () => (state.webcam ? stopWebcam() : startWebcam()));
  $("snapshot").addEventListener("click", snapshot);
}

async function init() {
  document.querySelectorAll(".origin").forEach((span) => { span.textContent = location.origin; });
  try {
    const [config, styles] = await Promise.all([getJson("/api/config"), getJson("/api/styles")]);
    state.config = config;
    state.styles = styles.styles;
  } catch (e) {
    setStatus(`Cannot reach the server: ${e.message}`, true);
    return;
  }
  const named = state.styles.filter((e) => e.kind === "named").length;
  $("model").textContent = `${named} styles of ${state.config.checkpoint || "the bundled model"}`;
  $("paintings").hidden = !paintingsOn();
  $("painting-curl").hidden = !paintingsOn();
  renderSizes();
  renderGallery();
  wireInputs();
  updateCommand();
  updateShares();
  $("webcam").hidden = !(await cameraAvailable());
  setStatus("Choose or drop a photo, then pick styles.");
  document.body.dataset.ready = "true";
}

init();
