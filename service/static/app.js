// The search page: a description, example images ("more like this", "not this person") and a
// photo -> POST /v1/search (or /v1/search/image) -> a grid of thumbnails and suggested details;
// uploads -> POST /v1/gallery.
"use strict";

const $ = (id) => document.getElementById(id);
// The key lives in sessionStorage only: gone when the tab closes, never in localStorage or a
// cookie, never in a URL.
const KEY_ITEM = "tps-api-key";

function storedKey() {
  return sessionStorage.getItem(KEY_ITEM) || "";
}

function keyHeaders() {
  const key = storedKey();
  return key ? { "X-API-Key": key } : {};
}

function askForKey(reason) {
  $("key-reason").textContent = reason;
  $("key-form").hidden = false;
  $("key-input").focus();
}

function showKeyState() {
  $("forget-key").hidden = !storedKey();
}

// fetch with the key; a 401 asks for one (and the caller still sees the 401).
async function api(url, options = {}) {
  const res = await fetch(url, { ...options, headers: { ...(options.headers || {}), ...keyHeaders() } });
  if (res.status === 401) {
    askForKey(storedKey()
      ? "The key was refused (unknown or revoked). Enter another one."
      : "This server needs an API key. It is kept only until this tab closes.");
  }
  return res;
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
    const info = await api("/v1/info");
    if (info.status === 401) {
      status.textContent = "An API key is needed";
      status.className = "status";
      return;
    }
    if (!info.ok) throw new Error("info " + info.status);
    const data = await info.json();
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
  // Plain <img src> cannot send a header: with a key, fetch the bytes and show them as a blob.
  if (!storedKey()) { img.src = url; return; }
  const res = await api(url);
  if (res.ok) img.src = URL.createObjectURL(await res.blob());
}

// What the page searches for; mirrored in the URL (all but the photo) so a search can be
// shared and reloaded: ?q=…&pos=ID&neg=ID&k=20&unique=1&cam=a,b&person=…&tag=…&after=…&before=…
const state = { positives: [], negatives: [], photo: null };

function list(text) {
  return text.split(",").map((v) => v.trim()).filter(Boolean);
}

function filters() {
  const f = {};
  const cams = list($("f-cameras").value);
  const persons = list($("f-persons").value);
  const tags = list($("f-tags").value);
  if (cams.length) f.camera_ids = cams;
  if (persons.length) f.person_ids = persons;
  if (tags.length) f.tags = tags;
  if ($("f-after").value) f.captured_after = $("f-after").value;
  if ($("f-before").value) f.captured_before = $("f-before").value;
  return f;
}

function toUrl() {
  const p = new URLSearchParams();
  const q = $("query").value.trim();
  if (q) p.set("q", q);
  state.positives.forEach((id) => p.append("pos", id));
  state.negatives.forEach((id) => p.append("neg", id));
  p.set("k", $("top-k").value);
  if ($("unique").checked) p.set("unique", "1");
  if (!$("suggest").checked) p.set("suggest", "0");
  const pairs = [["cam", "f-cameras"], ["person", "f-persons"], ["tag", "f-tags"],
                 ["after", "f-after"], ["before", "f-before"]];
  for (const [key, id] of pairs) if ($(id).value.trim()) p.set(key, $(id).value.trim());
  const text = p.toString();
  return text ? `?${text}` : location.pathname;
}

function fromUrl() {
  const p = new URLSearchParams(location.search);
  $("query").value = p.get("q") || "";
  state.positives = [...new Set(p.getAll("pos"))];
  state.negatives = [...new Set(p.getAll("neg"))].filter((id) => !state.positives.includes(id));
  const k = p.get("k");
  if (k && [...$("top-k").options].some((o) => o.value === k)) $("top-k").value = k;
  $("unique").checked = p.get("unique") === "1";
  $("suggest").checked = p.get("suggest") !== "0";
  const pairs = [["cam", "f-cameras"], ["person", "f-persons"], ["tag", "f-tags"],
                 ["after", "f-after"], ["before", "f-before"]];
  let anyFilter = false;
  for (const [key, id] of pairs) {
    $(id).value = p.get(key) || "";
    anyFilter = anyFilter || Boolean(p.get(key));
  }
  if (anyFilter) $("filters-panel").open = true;
  renderChips();
  return Boolean($("query").value.trim() || state.positives.length);
}

function chip(label, thumbId, removeLabel, onRemove) {
  const span = document.createElement("span");
  span.className = "chip";
  if (thumbId) {
    const img = document.createElement("img");
    img.alt = "";
    setImage(img, imageUrl(thumbId, 96));
    span.append(img);
  }
  const text = document.createElement("span");
  text.textContent = label;
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "chip-remove";
  remove.textContent = "×";
  remove.setAttribute("aria-label", removeLabel);
  remove.addEventListener("click", onRemove);
  span.append(text, remove);
  return span;
}

function renderChips() {
  const photo = state.photo
    ? [chip(`Photo: ${state.photo.name}`, null, "Remove the photo", () => {
        state.photo = null;
        $("photo").value = "";
        afterChipRemoved();
      })]
    : [];
  $("photo-chips").replaceChildren(...photo);
  const row = (ids, kind, words) =>
    ids.map((id) =>
      chip(`${words}: ${id}`, id, `Remove ${words.toLowerCase()} ${id}`, () => {
        state[kind] = state[kind].filter((x) => x !== id);
        afterChipRemoved();
      }),
    );
  $("positive-chips").replaceChildren(...row(state.positives, "positives", "More like"));
  $("negative-chips").replaceChildren(...row(state.negatives, "negatives", "Not"));
  $("positive-chips").dataset.kind = "positive";
  $("negative-chips").dataset.kind = "negative";
  $("examples").hidden = !(state.photo || state.positives.length || state.negatives.length);
}

function afterChipRemoved() {
  renderChips();
  if (canSearch()) runSearch();
  else {
    $("results").replaceChildren();
    $("suggestions").hidden = true;
    $("summary").textContent = "";
    history.pushState(null, "", toUrl());
  }
  $("query").focus();
}

function canSearch() {
  return Boolean($("query").value.trim() || state.positives.length || state.photo);
}

function choose(id, kind) {
  const other = kind === "positives" ? "negatives" : "positives";
  state[other] = state[other].filter((x) => x !== id);
  if (!state[kind].includes(id)) state[kind].push(id);
  renderChips();
  runSearch({ focusSummary: true });
}

// "lobby-1 · 2024-05-01 08:00:03 UTC", and for a recording's track the span it was seen in.
function utc(text) {
  return text ? text.replace("T", " ").replace(/(\.\d+)?Z$/, " UTC") : "";
}

function whereAndWhen(hit) {
  const parts = [hit.camera_id, utc(hit.captured_at)].filter(Boolean);
  if (hit.track_start && hit.track_end) {
    parts.push(`seen ${utc(hit.track_start).slice(11, 19)}–${utc(hit.track_end).slice(11, 19)}`);
  }
  return parts.length ? parts.join(" · ") : "camera and time unknown";
}

function card(hit) {
  const li = document.createElement("li");
  li.className = "card";
  li.dataset.imageId = hit.image_id;
  li.dataset.personId = hit.person_id || "";
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
  const where = document.createElement("span");
  where.className = "where";
  where.textContent = whereAndWhen(hit);
  const actions = document.createElement("div");
  actions.className = "actions";
  const more = document.createElement("button");
  more.type = "button";
  more.className = "more";
  more.textContent = "More like this";
  more.setAttribute("aria-label", `More like result ${hit.rank}`);
  more.addEventListener("click", () => choose(hit.image_id, "positives"));
  const not = document.createElement("button");
  not.type = "button";
  not.className = "not";
  not.textContent = "Not this person";
  not.setAttribute("aria-label", `Result ${hit.rank} is not this person`);
  not.addEventListener("click", () => choose(hit.image_id, "negatives"));
  actions.append(more, not);
  meta.append(score, who, where, actions);
  li.append(frame, meta);
  return li;
}

function suggestionChip(s) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "suggestion";
  button.textContent = `+ ${s.phrase}`;
  button.title = `Search for: ${s.query}`;
  button.addEventListener("click", () => {
    $("query").value = s.query;
    runSearch({ focusSummary: true });
  });
  return button;
}

function showSuggestions(suggestions) {
  const chips = (suggestions || []).map(suggestionChip);
  $("suggestion-chips").replaceChildren(...chips);
  $("suggestions").hidden = chips.length === 0;
}

function searchFields() {
  const fields = { top_k: Number($("top-k").value), unique_persons: $("unique").checked };
  const query = $("query").value.trim();
  if (query) fields.query = query;
  if (state.positives.length) fields.positive_ids = state.positives;
  if (state.negatives.length) fields.negative_ids = state.negatives;
  if ($("suggest").checked) fields.suggest = true;
  const f = filters();
  if (Object.keys(f).length) fields.filters = f;
  return fields;
}

function request(fields) {
  if (!state.photo) {
    return api("/v1/search", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(fields),
    });
  }
  // The photo goes as multipart; every other field as text (lists by repeating the field).
  const form = new FormData();
  form.append("image", state.photo);
  for (const [name, value] of Object.entries(fields)) {
    if (Array.isArray(value)) value.forEach((v) => form.append(name, v));
    else if (typeof value === "object") form.append(name, JSON.stringify(value));
    else form.append(name, String(value));
  }
  return api("/v1/search/image", { method: "POST", body: form });
}

async function runSearch({ push = true, focusSummary = false } = {}) {
  if (!canSearch()) return;
  const button = $("search-button");
  const error = $("search-error");
  button.disabled = true;
  error.hidden = true;
  if (push) history.pushState(null, "", toUrl());
  try {
    const res = await request(searchFields());
    const body = await res.json().catch(() => null);
    if (!res.ok) throw new Error(message(body, `search failed (${res.status})`));
    $("results").replaceChildren(...body.results.map(card));
    showSuggestions(body.suggestions);
    const cut = body.truncated ? " · the description was too long and was shortened" : "";
    const examples = state.positives.length + state.negatives.length + (state.photo ? 1 : 0);
    const used = examples ? ` · ${examples} example${examples > 1 ? "s" : ""}` : "";
    $("summary").textContent = `${body.results.length} results in ${body.took_ms.toFixed(0)} ms${used}${cut}`;
    if (focusSummary) $("summary").focus();
  } catch (err) {
    error.textContent = err.message;
    error.hidden = false;
  } finally {
    button.disabled = false;
  }
}

function search(event) {
  event.preventDefault();
  runSearch();
}

function pickPhoto() {
  const file = $("photo").files[0];
  if (!file) return;
  state.photo = file;
  renderChips();
  runSearch();
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
    const res = await api("/v1/gallery", { method: "POST", body: form });
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

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = $("key-input").value.trim();
  if (!key) return;
  sessionStorage.setItem(KEY_ITEM, key);
  $("key-input").value = "";
  $("key-form").hidden = true;
  showKeyState();
  loadStatus();
  if (canSearch()) runSearch({ push: false });
});
$("forget-key").addEventListener("click", () => {
  sessionStorage.removeItem(KEY_ITEM);
  showKeyState();
  $("results").replaceChildren();
  loadStatus();
});
showKeyState();
$("search-form").addEventListener("submit", search);
$("upload-form").addEventListener("submit", upload);
$("photo").addEventListener("change", pickPhoto);
window.addEventListener("popstate", () => {
  if (fromUrl()) runSearch({ push: false });
});
loadStatus();
if (fromUrl()) runSearch({ push: false });
