// The review page: log in, go through events (filters kept in the URL), watch the clip,
// give verdicts with one click or one key, look at the cameras. Plain DOM, no library,
// nothing from another host: it works on an isolated network.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { me: null, csrf: null, items: [], index: -1, nextOffset: null };
const PAGE = 25;
const FILTERS = ["camera", "class", "verdict", "reviewed"];

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  if (state.csrf && options.method && options.method !== "GET") headers["X-CSRF-Token"] = state.csrf;
  const answer = await fetch(path, {
    ...options,
    headers,
    credentials: "same-origin",
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  if (answer.status === 401 && path !== "/api/v1/session") showLogin();
  return answer;
}

function params() {
  return new URLSearchParams(window.location.search);
}

function setParams(changes) {
  const p = params();
  for (const [key, value] of Object.entries(changes)) {
    if (value === "" || value === null || value === undefined) p.delete(key);
    else p.set(key, value);
  }
  history.replaceState(null, "", "?" + p.toString());
}

function text(tag, content, className) {
  const node = document.createElement(tag);
  node.textContent = content === null || content === undefined ? "" : String(content);
  if (className) node.className = className;
  return node;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

function seconds(event) {
  if (!event.ended_at) return "open";
  return ((new Date(event.ended_at) - new Date(event.started_at)) / 1000).toFixed(1) + " s";
}

function showLogin() {
  state.me = state.csrf = null;
  for (const id of ["tabs", "who", "review", "cameras"]) $(id).hidden = true;
  $("login").hidden = false;
  $("login").elements.name.focus();
}

async function start() {
  const answer = await fetch("/api/v1/session", { credentials: "same-origin" });
  const me = answer.ok ? await answer.json() : { name: null };
  if (me.name === null) return showLogin();
  state.me = me;
  state.csrf = me.csrf_token;
  $("login").hidden = true;
  $("tabs").hidden = $("who").hidden = false;
  $("me").textContent = `${me.name} (${me.role})`;
  const view = params().get("view") === "cameras" ? "cameras" : "review";
  $("tab-review").toggleAttribute("aria-current", view === "review");
  $("tab-cameras").toggleAttribute("aria-current", view === "cameras");
  if (view === "review") $("tab-review").setAttribute("aria-current", "page");
  else $("tab-cameras").setAttribute("aria-current", "page");
  $("review").hidden = view !== "review";
  $("cameras").hidden = view !== "cameras";
  if (view === "cameras") return loadCameras();
  const p = params();
  for (const name of FILTERS) $("filters").elements[name].value = p.get(name) || "";
  return loadEvents();
}

async function loadEvents() {
  const p = params();
  const query = new URLSearchParams({ limit: String(PAGE), offset: p.get("offset") || "0" });
  for (const name of FILTERS) if (p.get(name)) query.set(name, p.get(name));
  const answer = await api("/api/v1/events?" + query.toString());
  if (!answer.ok) return;
  const body = await answer.json();
  state.items = body.items;
  state.nextOffset = body.next_offset;
  const rows = $("events").tBodies[0];
  rows.replaceChildren();
  body.items.forEach((event, i) => rows.append(row(event, i)));
  $("empty").hidden = body.items.length > 0;
  const offset = Number(p.get("offset") || 0);
  $("page").textContent = body.items.length ? `${offset + 1}–${offset + body.items.length}` : "";
  $("prev").disabled = offset === 0;
  $("next").disabled = body.next_offset === null;
  $("detail").hidden = true;
  state.index = -1;
}

function row(event, i) {
  const tr = document.createElement("tr");
  tr.tabIndex = 0;
  tr.dataset.index = String(i);
  if (!event.reviewed) tr.classList.add("unreviewed");
  const cell = document.createElement("td");
  if (event.snapshot_url) {
    const img = document.createElement("img");
    img.src = event.snapshot_url;
    img.loading = "lazy";
    img.alt = `peak frame of ${event.class_name} on ${event.camera}`;
    cell.append(img);
  } else {
    cell.textContent = "no snapshot";
  }
  tr.append(cell, text("td", event.camera), text("td", event.class_name), text("td", event.severity),
    text("td", when(event.started_at)), text("td", seconds(event)), text("td", event.peak_score.toFixed(2)),
    text("td", event.weather ? event.weather.text : ""),
    text("td", event.verdict ? event.verdict.replace("_", " ") : "", event.verdict ? `verdict-${event.verdict}` : ""));
  tr.addEventListener("click", () => open(i));
  tr.addEventListener("keydown", (e) => { if (e.key === "Enter") open(i); });
  return tr;
}

function open(i) {
  if (i < 0 || i >= state.items.length) return;
  state.index = i;
  const event = state.items[i];
  if (!event.reviewed) {
    event.reviewed = true;  // opened: reviewed, for this user
    $("events").tBodies[0].rows[i].classList.remove("unreviewed");
    api(`/api/v1/events/${event.uuid}/review`, { method: "POST" });
  }
  for (const tr of $("events").tBodies[0].rows) tr.setAttribute("aria-selected", String(tr.dataset.index === String(i)));
  $("events").tBodies[0].rows[i].focus();
  $("detail").hidden = false;
  $("detail-title").textContent = `${event.class_name} on ${event.camera}, ${when(event.started_at)}`;
  const clip = $("clip");
  clip.hidden = !event.clip_url;
  $("no-clip").hidden = Boolean(event.clip_url);
  if (event.clip_url) {
    clip.src = event.clip_url;
    clip.play().catch(() => {});  // muted: allowed; a clip still being cut plays on retry
  } else {
    clip.removeAttribute("src");
  }
  const snapshot = $("snapshot");
  snapshot.hidden = !event.snapshot_url;
  if (event.snapshot_url) snapshot.src = event.snapshot_url;
  snapshot.alt = `peak frame of ${event.class_name} on ${event.camera}`;
  const facts = $("facts");
  facts.replaceChildren();
  const opened = event.opened_statistic === null ? "not recorded"
    : `${event.opened_statistic.toFixed(2)} against ${event.opened_threshold.toFixed(2)}`;
  for (const [label, value] of [
    ["Severity", event.severity], ["Status", event.status], ["Duration", seconds(event)],
    ["Peak", `${event.peak_score.toFixed(3)} at ${when(event.peak_at)}`], ["Opened by", opened],
    ["Weather", event.weather ? event.weather.text : "none"],
    ["Verdict", event.verdict ? `${event.verdict.replace("_", " ")} by ${event.verdict_by || "?"}` : "none"],
  ]) facts.append(text("dt", label), text("dd", value));
  $("judge").hidden = !(state.me && (state.me.role === "operator" || state.me.role === "admin"));
  $("note").value = event.verdict_note || "";
  $("verdict-status").textContent = "";
}

async function judge(verdict) {
  if (state.index < 0 || $("judge").hidden) return;
  const event = state.items[state.index];
  const note = $("note").value.trim();
  const answer = await api(`/api/v1/events/${event.uuid}/feedback`, {
    method: "POST", body: { verdict, note: note || null },
  });
  const body = await answer.json();
  if (!answer.ok) {
    $("verdict-status").textContent = `Not stored: ${typeof body.detail === "string" ? body.detail : answer.status}`;
    return;
  }
  state.items[state.index] = { ...body.event, reviewed: true };
  const i = state.index;
  $("events").tBodies[0].rows[i].replaceWith(row(body.event, i));
  open(i);
  $("verdict-status").textContent = verdict === "false_alarm"
    ? `Stored: false alarm. The camera learned this sight (${body.normal_references ?? "?"} normal references).`
    : "Stored: confirmed.";
}

async function loadCameras() {
  const answer = await api("/api/v1/cameras");
  if (!answer.ok) return;
  const tiles = $("tiles");
  tiles.replaceChildren();
  for (const camera of (await answer.json()).items) {
    const li = document.createElement("li");
    li.append(text("h3", camera.name), text("p", camera.state, `state-${camera.state}`),
      text("p", `${camera.fps} fps, last frame ${camera.last_frame_age_s ?? "–"} s ago`),
      text("p", `${camera.unreviewed} unreviewed in the last 7 days`, camera.unreviewed ? "unreviewed" : ""));
    const c = camera.calibration;
    if (c) li.append(text("p", c.learning ? "learning its normal" : c.calibrated ? "calibrated" : "not calibrated"));
    if (camera.last_error) li.append(text("p", camera.last_error));
    tiles.append(li);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", async (e) => {
    e.preventDefault();
    const form = e.target;
    const answer = await api("/api/v1/session", {
      method: "POST", body: { name: form.elements.name.value, password: form.elements.password.value },
    });
    form.elements.password.value = "";
    if (!answer.ok) {
      $("login-error").textContent = answer.status === 429 ? "Too many attempts; wait a minute." : "Wrong name or password.";
      return;
    }
    $("login-error").textContent = "";
    await start();
  });
  $("logout").addEventListener("click", async () => {
    await api("/api/v1/session", { method: "DELETE" });
    showLogin();
  });
  $("filters").addEventListener("submit", (e) => {
    e.preventDefault();
    const f = e.target.elements;
    setParams({ camera: f.camera.value.trim(), class: f.class.value.trim(), verdict: f.verdict.value,
      reviewed: f.reviewed.value, offset: "" });
    loadEvents();
  });
  $("prev").addEventListener("click", () => {
    setParams({ offset: String(Math.max(0, Number(params().get("offset") || 0) - PAGE)) || "" });
    loadEvents();
  });
  $("next").addEventListener("click", () => {
    if (state.nextOffset !== null) { setParams({ offset: String(state.nextOffset) }); loadEvents(); }
  });
  $("confirm").addEventListener("click", () => judge("confirmed"));
  $("false-alarm").addEventListener("click", () => judge("false_alarm"));
  document.addEventListener("keydown", (e) => {
    if (e.target instanceof HTMLInputElement || e.target instanceof HTMLSelectElement) return;
    if ($("review").hidden) return;
    if (e.key === "j" || e.key === "ArrowDown") { e.preventDefault(); open(Math.min(state.index + 1, state.items.length - 1)); }
    else if (e.key === "k" || e.key === "ArrowUp") { e.preventDefault(); open(Math.max(state.index - 1, 0)); }
    else if (e.key === "c") judge("confirmed");
    else if (e.key === "f") judge("false_alarm");
  });
  start();
});
