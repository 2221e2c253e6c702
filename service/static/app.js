// The search page: query -> POST /v1/search -> a grid of thumbnails; uploads -> POST /v1/gallery.
"use strict";

const $ = (id) => document.getElementById(id);
let readsNeedKey = false;

function keyHeaders() {
  const key = $("api-key").value.trim();
  return key ? { "X-API-Key": key } : {};
}

function message(body, fallback) {
  if (!body || body.detail === undefined) return fallback;
  if (typeof body.detail === "string") return body.detail;
  return body.detail.map((e) => e.msg).join("; ");
}

async function loadStatus() {
  const status = $("status");
  try {
    const ready = await fetch("/readyz");
    if (!ready.ok) {
      status.textContent = "Loading the model and index…";
      status.className = "status";
      setTimeout(loadStatus, 2000);
      return;
    }
    const info = await fetch("/v1/info", { headers: keyHeaders() });
    if (!info.ok) throw new Error("info " + info.status);
    const data = await info.json();
    readsNeedKey = data.read_requires_key;
    status.textContent = `${data.index.count.toLocaleString()} images · model ${data.model.slice(0, 8)}`;
    status.className = "status ok";
    $("upload-panel").hidden = !data.writes_enabled;
  } catch (err) {
    status.textContent = "Service unavailable";
    status.className = "status bad";
  }
}

function imageUrl(id, size) {
  return `/v1/gallery/${id.split("/").map(encodeURIComponent).join("/")}/image?size=${size}`;
}

async function setImage(img, url) {
  // Plain <img src> cannot send a header: fetch the bytes when reads need the key.
  if (!readsNeedKey) { img.src = url; return; }
  const res = await fetch(url, { headers: keyHeaders() });
  if (res.ok) img.src = URL.createObjectURL(await res.blob());
}

function card(hit) {
  const li = document.createElement("li");
  li.className = "card";
  const frame = document.createElement("div");
  frame.className = "frame";
  const img = document.createElement("img");
  img.alt = `Result ${hit.rank}: ${hit.person_id ? "person " + hit.person_id : hit.image_id}`;
  img.loading = "lazy";
  img.decoding = "async";
  setImage(img, imageUrl(hit.image_id, 384));
  const rank = document.createElement("span");
  rank.className = "rank";
  rank.textContent = `#${hit.rank}`;
  frame.append(img, rank);
  const meta = document.createElement("div");
  meta.className = "meta";
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = hit.score.toFixed(3);
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = hit.person_id ? `person ${hit.person_id}` : "unknown person";
  // Where and when, when the gallery knows (camera_id, captured_at in UTC).
  who.title = [hit.image_id, hit.camera_id, hit.captured_at].filter(Boolean).join(" · ");
  meta.append(score, who);
  li.append(frame, meta);
  return li;
}

async function search(event) {
  event.preventDefault();
  const query = $("query").value.trim();
  if (!query) return;
  const button = $("search-button");
  const error = $("search-error");
  button.disabled = true;
  error.hidden = true;
  try {
    const res = await fetch("/v1/search", {
      method: "POST",
      headers: { "Content-Type": "application/json", ...keyHeaders() },
      body: JSON.stringify({
        query,
        top_k: Number($("top-k").value),
        unique_persons: $("unique").checked,
      }),
    });
    const body = await res.json().catch(() => null);
    if (!res.ok) throw new Error(message(body, `search failed (${res.status})`));
    $("results").replaceChildren(...body.results.map(card));
    const cut = body.truncated ? " · the description was too long and was shortened" : "";
    $("summary").textContent = `${body.results.length} results in ${body.took_ms.toFixed(0)} ms${cut}`;
  } catch (err) {
    error.textContent = err.message;
    error.hidden = false;
  } finally {
    button.disabled = false;
  }
}

async function upload(event) {
  event.preventDefault();
  const out = $("upload-result");
  const form = new FormData();
  for (const file of $("files").files) form.append("files", file);
  const person = $("person-id").value.trim();
  if (person) form.append("person_id", person);
  out.className = "result";
  out.textContent = "Uploading…";
  try {
    const res = await fetch("/v1/gallery", { method: "POST", headers: keyHeaders(), body: form });
    const body = await res.json().catch(() => null);
    if (!res.ok) throw new Error(message(body, `upload failed (${res.status})`));
    const dup = body.duplicates.length ? `, ${body.duplicates.length} already there` : "";
    out.textContent = `Added ${body.added.length} image(s)${dup}.`;
    $("upload-form").reset();
    loadStatus();
  } catch (err) {
    out.className = "result bad";
    out.textContent = err.message;
  }
}

$("search-form").addEventListener("submit", search);
$("upload-form").addEventListener("submit", upload);
loadStatus();
