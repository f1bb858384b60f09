// The review page: log in, go through events (filters kept in the URL), watch the clip,
// give verdicts with one click or one key, look at the cameras. Plain DOM, no library,
// nothing from another host: it works on an isolated network.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { me: null, csrf: null, items: [], index: -1, current: null, older: null, newer: null, tiles: null };
const PAGE = 25;
const FILTERS = ["camera", "class", "verdict", "reviewed", "since", "until"];
const TIMES = ["since", "until"];  // datetime-local inputs; ISO 8601 with zone in the URL
const TILE_REFRESH_MS = 10000;
const SVG = "http://www.w3.org/2000/svg";  // a namespace name, not a request
const VIEWS = ["review", "cameras", "search", "classes"];
const SEARCH = ["q", "camera", "since", "until"];  // the search form's fields kept in the URL
const RESULTS = 60;

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
  for (const id of ["tabs", "who", ...VIEWS]) $(id).hidden = true;
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
  const asked = params().get("view");
  const view = VIEWS.includes(asked) ? asked : "review";
  for (const name of VIEWS) {
    $(`tab-${name}`).removeAttribute("aria-current");
    $(name).hidden = name !== view;
  }
  $(`tab-${view}`).setAttribute("aria-current", "page");
  clearInterval(state.tiles);
  if (view === "cameras") {
    state.tiles = setInterval(loadCameras, TILE_REFRESH_MS);
    return loadCameras();
  }
  if (view === "search") return loadSearch();
  if (view === "classes") return loadClasses();
  const p = params();
  for (const name of FILTERS) {
    const value = p.get(name) || "";
    $("filters").elements[name].value = TIMES.includes(name) ? localTime(value) : value;
  }
  await loadEvents();
  if (p.get("event")) await openByUuid(p.get("event"));
}

function localTime(iso) {
  // An ISO time as the value of a datetime-local input (the browser's zone).
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}

function isoTime(local) {
  return local ? new Date(local).toISOString() : "";
}

async function loadEvents() {
  const p = params();
  const query = new URLSearchParams({ limit: String(PAGE) });
  for (const name of FILTERS) if (p.get(name)) query.set(name, p.get(name));
  for (const key of ["before", "after"]) if (p.get(key)) query.set(key, p.get(key));
  const answer = await api("/api/v1/events?" + query.toString());
  if (answer.status === 404 && (p.get("before") || p.get("after"))) {
    setParams({ before: "", after: "" });  // the page's first event is gone: from the top
    return loadEvents();
  }
  if (!answer.ok) return;
  const body = await answer.json();
  if (p.get("after") && body.next_after === null) {
    setParams({ after: "" });  // reached the newest: the first page, full
    if (body.items.length < PAGE) return loadEvents();
  }
  state.items = body.items;
  state.older = body.next_before;
  state.newer = body.next_after;
  const rows = $("events").tBodies[0];
  rows.replaceChildren();
  body.items.forEach((event, i) => rows.append(row(event, i)));
  $("empty").hidden = body.items.length > 0;
  const items = body.items;
  $("page").textContent = items.length
    ? `${items.length} events, ${when(items[0].started_at)} to ${when(items[items.length - 1].started_at)}` : "";
  $("prev").disabled = state.newer === null;
  $("next").disabled = state.older === null;
  $("detail").hidden = true;
  state.index = -1;
  state.current = null;
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
  for (const tr of $("events").tBodies[0].rows) tr.setAttribute("aria-selected", String(tr.dataset.index === String(i)));
  $("events").tBodies[0].rows[i].focus();
  show(state.items[i]);
}

async function openByUuid(uuid) {
  // An event by its uuid (a neighbour, or a shared link): in the list when it is there.
  const i = state.items.findIndex((e) => e.uuid === uuid);
  if (i >= 0) return open(i);
  const answer = await api(`/api/v1/events/${encodeURIComponent(uuid)}`);
  if (!answer.ok) return;
  state.index = -1;
  for (const tr of $("events").tBodies[0].rows) tr.setAttribute("aria-selected", "false");
  show(await answer.json());
}

function show(event) {
  state.current = event;
  setParams({ event: event.uuid });
  if (!event.reviewed) {
    event.reviewed = true;  // opened: reviewed, for this user
    if (state.index >= 0) $("events").tBodies[0].rows[state.index].classList.remove("unreviewed");
    api(`/api/v1/events/${event.uuid}/review`, { method: "POST" });
  }
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
    : `statistic ${event.opened_statistic.toFixed(2)} against threshold ${event.opened_threshold.toFixed(2)}`;
  for (const [label, value] of [
    ["Severity", event.severity], ["Status", event.status], ["Duration", seconds(event)],
    ["Peak", `${event.peak_score.toFixed(3)} at ${when(event.peak_at)}`], ["Opened by", opened],
    ["Weather", event.weather ? event.weather.text : "none"],
    ["Verdict", event.verdict ? `${event.verdict.replace("_", " ")} by ${event.verdict_by || "?"}` : "none"],
  ]) facts.append(text("dt", label), text("dd", value));
  $("judge").hidden = !(state.me && (state.me.role === "operator" || state.me.role === "admin"));
  $("note").value = event.verdict_note || "";
  $("verdict-status").textContent = "";
  loadSeries(event);
  loadNeighbours(event);
}

async function loadSeries(event) {
  const figure = $("series");
  figure.hidden = true;
  const answer = await api(`/api/v1/events/${event.uuid}/scores`);
  if (!answer.ok || state.current !== event) return;
  const body = await answer.json();
  const plot = $("plot");
  plot.replaceChildren();
  $("series-caption").textContent = body.ts.length
    ? `${event.class_name} on ${event.camera}: score (grey) and the way to the threshold (blue; 1 opens an event), `
      + `${when(body.since)} to ${when(body.until)}; the shaded span is the event.`
    : "No scores stored around this event (storage.write_scores is off, or they were removed).";
  figure.hidden = false;
  if (!body.ts.length) return;
  const [w, h, pad, axis] = [600, 160, 4, 18];  // the bottom `axis` px hold the times
  const t0 = new Date(body.since).getTime();
  const span = Math.max(1, new Date(body.until).getTime() - t0);
  const top = Math.max(1.2, ...body.progress.filter((v) => v !== null).map((v) => Math.min(v, 3)));
  const x = (iso) => pad + ((new Date(iso).getTime() - t0) / span) * (w - 2 * pad);
  const y = (v) => h - axis - (Math.min(v, top) / top) * (h - axis - pad);
  const shape = (tag, attrs) => {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    plot.append(node);
    return node;
  };
  const end = event.ended_at || body.until;
  shape("rect", { x: x(event.started_at), y: pad, width: Math.max(1, x(end) - x(event.started_at)),
    height: h - axis - pad, class: "span" });
  shape("line", { x1: pad, x2: w - pad, y1: y(1), y2: y(1), class: "threshold" });
  const label = (content, attrs) => { shape("text", attrs).textContent = content; };
  const clock = (iso) => new Date(iso).toLocaleTimeString();
  label("threshold", { x: w - pad, y: y(1) - 3, "text-anchor": "end" });
  label(clock(body.since), { x: pad, y: h - 4 });
  label(clock(event.started_at), { x: x(event.started_at), y: h - 4, "text-anchor": "middle" });
  label(clock(body.until), { x: w - pad, y: h - 4, "text-anchor": "end" });
  const line = (values, cls) => {
    const points = body.ts.map((t, i) => (values[i] === null ? null : `${x(t).toFixed(1)},${y(values[i]).toFixed(1)}`));
    shape("polyline", { points: points.filter((p) => p !== null).join(" "), class: cls });
  };
  line(body.score, "score");
  line(body.progress, "progress");
}

async function loadNeighbours(event) {
  const list = $("neighbours");
  list.replaceChildren();
  const around = async (key) => {
    const query = new URLSearchParams({ camera: event.camera, limit: "3", [key]: event.uuid });
    const answer = await api("/api/v1/events?" + query.toString());
    return answer.ok ? (await answer.json()).items : [];
  };
  const [newer, older] = await Promise.all([around("after"), around("before")]);
  if (state.current !== event) return;
  const neighbours = [...newer, ...older];
  $("no-neighbours").hidden = neighbours.length > 0;
  for (const other of neighbours) {
    const li = document.createElement("li");
    const link = document.createElement("a");
    link.href = `?${new URLSearchParams({ camera: other.camera, event: other.uuid })}`;
    link.textContent = `${when(other.started_at)}: ${other.class_name}, peak ${other.peak_score.toFixed(2)}`
      + (other.verdict ? `, ${other.verdict.replace("_", " ")}` : "");
    link.addEventListener("click", (e) => { e.preventDefault(); openByUuid(other.uuid); });
    li.append(link);
    list.append(li);
  }
}

async function judge(verdict) {
  const event = state.current;
  if (event === null || $("judge").hidden) return;
  const note = $("note").value.trim();
  const answer = await api(`/api/v1/events/${event.uuid}/feedback`, {
    method: "POST", body: { verdict, note: note || null },
  });
  const body = await answer.json();
  if (!answer.ok) {
    $("verdict-status").textContent = `Not stored: ${typeof body.detail === "string" ? body.detail : answer.status}`;
    return;
  }
  const updated = { ...body.event, reviewed: true };
  const i = state.items.findIndex((e) => e.uuid === updated.uuid);
  if (i >= 0) {
    state.items[i] = updated;
    $("events").tBodies[0].rows[i].replaceWith(row(updated, i));
  }
  if (i >= 0 && i === state.index) open(i);
  else show(updated);
  $("verdict-status").textContent = verdict === "false_alarm"
    ? `Stored: false alarm. The camera learned this sight (${body.normal_references ?? "?"} normal references).`
    : "Stored: confirmed.";
}

async function loadCameras() {
  if ($("cameras").hidden) return clearInterval(state.tiles);
  const answer = await api("/api/v1/cameras");
  if (!answer.ok) return;
  const cameras = (await answer.json()).items;
  const tiles = $("tiles");
  const old = new Map([...tiles.children].map((li) => [li.dataset.camera, li]));
  tiles.replaceChildren();
  for (const camera of cameras) {
    const li = document.createElement("li");
    li.dataset.camera = camera.name;
    const img = old.get(camera.name)?.querySelector("img") || document.createElement("img");
    img.alt = `latest frame of camera ${camera.name}`;
    const none = text("div", `no frame from ${camera.name} yet`, "noframe");
    none.hidden = !img.hidden;
    const review = document.createElement("a");
    review.href = `?${new URLSearchParams({ camera: camera.name })}`;
    review.textContent = `${camera.unreviewed} unreviewed in the last 7 days`;
    if (camera.unreviewed) review.className = "unreviewed";
    li.append(img, none, text("h3", camera.name), text("p", camera.state.replace("_", " "), `state-${camera.state}`),
      text("p", `${camera.fps ?? 0} fps, last frame ${camera.last_frame_age_s ?? "–"} s ago`
        + (camera.node ? `, on ${camera.node}` : "")),
      text("p", camera.open_events ? `${camera.open_events} open event${camera.open_events > 1 ? "s" : ""}` : "no open event",
        camera.open_events ? "open" : ""));
    const p = document.createElement("p");
    p.append(review);
    li.append(p);
    const c = camera.calibration;
    if (c) li.append(text("p", c.learning ? "learning its normal" : c.calibrated ? "calibrated" : "not calibrated"));
    if (camera.last_error) li.append(text("p", camera.last_error));
    tiles.append(li);
    latestFrame(camera.name, img, none);
  }
}

async function latestFrame(name, img, none) {
  // Fetched, not linked: the same URL every 10 s would come from the browser's cache.
  const answer = await api(`/api/v1/cameras/${encodeURIComponent(name)}/latest.jpg`);
  img.hidden = !answer.ok;
  none.hidden = answer.ok;
  if (!answer.ok) return;
  const url = URL.createObjectURL(await answer.blob());
  const before = img.src;
  img.src = url;
  if (before.startsWith("blob:")) URL.revokeObjectURL(before);
}

async function loadSearch() {
  // Words (q), or what is like an event (like_event) or a keyframe (like_keyframe).
  const p = params();
  const form = $("search-form").elements;
  for (const name of SEARCH) {
    const value = p.get(name) || "";
    form[name].value = TIMES.includes(name) ? localTime(value) : value;
  }
  const query = new URLSearchParams({ limit: String(RESULTS) });
  for (const name of ["camera", "since", "until"]) if (p.get(name)) query.set(name, p.get(name));
  let answer;
  let what;
  if (p.get("like_event")) {
    query.set("event", p.get("like_event"));
    what = "like the event's peak";
    answer = await api(`/api/v1/search/similar?${query}`, { method: "POST" });
  } else if (p.get("like_keyframe")) {
    query.set("keyframe", p.get("like_keyframe"));
    what = "like the chosen moment";
    answer = await api(`/api/v1/search/similar?${query}`, { method: "POST" });
  } else if (p.get("q")) {
    query.set("q", p.get("q"));
    what = `for “${p.get("q")}”`;
    answer = await api(`/api/v1/search?${query}`);
  } else {
    $("results").replaceChildren();
    $("search-status").textContent = "Type what to look for, or choose an image.";
    return;
  }
  await showResults(answer, what);
}

async function searchImage(file, form) {
  // An uploaded image: multipart, so not through api() (which sends JSON).
  const query = new URLSearchParams({ limit: String(RESULTS) });
  if (form.camera.value.trim()) query.set("camera", form.camera.value.trim());
  if (form.since.value) query.set("since", isoTime(form.since.value));
  if (form.until.value) query.set("until", isoTime(form.until.value));
  const body = new FormData();
  body.append("file", file);
  const answer = await fetch(`/api/v1/search/similar?${query}`, {
    method: "POST", body, credentials: "same-origin", headers: { "X-CSRF-Token": state.csrf || "" },
  });
  if (answer.status === 401) return showLogin();
  await showResults(answer, `like ${file.name}`);
}

async function showResults(answer, what) {
  const status = $("search-status");
  const results = $("results");
  results.replaceChildren();
  if (!answer.ok) {
    const body = await answer.json().catch(() => ({}));
    const detail = Array.isArray(body.detail) ? body.detail.map((d) => d.msg).join("; ") : body.detail;
    status.textContent = `Search failed: ${detail || answer.statusText}`;
    return;
  }
  const data = await answer.json();
  const admin = Boolean(state.me && state.me.role === "admin");
  $("example-bar").hidden = !admin;
  if (admin) fillClassNames();
  status.textContent = `${data.items.length} moment${data.items.length === 1 ? "" : "s"} ${what}, `
    + `best first, among ${data.searched} kept (${data.took_ms} ms)`
    + (data.loading ? "; still loading older ones" : "");
  for (const item of data.items) {
    const li = document.createElement("li");
    li.dataset.keyframe = String(item.keyframe);
    const img = document.createElement("img");
    img.loading = "lazy";
    img.src = item.thumbnail_url;
    img.alt = `${item.camera} at ${when(item.ts)}`;
    li.append(img, text("p", `${item.camera}, ${when(item.ts)}`),
      text("p", `score ${item.score.toFixed(1)} (cosine ${item.similarity.toFixed(3)})`, "score"));
    if (item.event) {
      const link = document.createElement("a");
      link.href = `?${new URLSearchParams({ view: "review", event: item.event.uuid })}`;
      link.textContent = `${item.event.class_name} event`;
      link.className = "event";
      const p = document.createElement("p");
      p.append(link);
      li.append(p);
    }
    const similar = text("button", "Find similar");
    similar.type = "button";
    similar.addEventListener("click", () => {
      window.location.search = `?${new URLSearchParams({ view: "search", like_keyframe: String(item.keyframe) })}`;
    });
    li.append(similar);
    if (admin) {
      const add = text("button", "Add to class");
      add.type = "button";
      add.addEventListener("click", () => addExample(item.keyframe));
      li.append(add);
    }
    results.append(li);
  }
}

async function addExample(keyframe) {
  // A search result becomes an example of a class by example (a new name makes the class).
  const name = $("example-class").value.trim();
  const status = $("search-status");
  if (!/^[a-z0-9][a-z0-9_]{0,63}$/.test(name)) {
    status.textContent = "Name the class first (a-z, 0-9 and _).";
    $("example-class").focus();
    return;
  }
  const query = new URLSearchParams({ keyframe: String(keyframe) });
  const answer = await api(`/api/v1/classes/${encodeURIComponent(name)}/examples?${query}`, { method: "POST" });
  const body = await answer.json().catch(() => ({}));
  if (!answer.ok) {
    const detail = Array.isArray(body.detail) ? body.detail.map((d) => d.msg).join("; ") : body.detail;
    status.textContent = `Not added: ${detail || answer.statusText}`;
    return;
  }
  const count = body.class.examples.length;
  status.textContent = `Class ${name} now has ${count} example${count === 1 ? "" : "s"}; each camera learns it before it alerts.`;
}

async function fillClassNames() {
  const answer = await api("/api/v1/classes");
  if (!answer.ok) return;
  const names = $("class-names");
  names.replaceChildren();
  for (const c of (await answer.json()).classes) {
    if (c.examples) names.append(new Option(c.name, c.name));
  }
}

function described(c) {
  // What the class list shows of how a class is described: its prompts, or its examples.
  if (c.examples) return `by example: ${c.examples.length} example${c.examples.length === 1 ? "" : "s"}`;
  return c.prompts.join("; ");
}

async function loadClasses() {
  // The live prompt bank; admins edit it (every change a new version, who and when).
  const answer = await api("/api/v1/classes");
  if (!answer.ok) { $("bank-version").textContent = "The classes cannot be read here."; return; }
  const bank = await answer.json();
  state.classes = bank.classes;
  $("bank-version").textContent = `Version ${bank.version}, from the ${bank.source === "database" ? "database (edited here)" : "bank file"}.`;
  const body = $("class-list").tBodies[0];
  body.replaceChildren();
  const admin = state.me && state.me.role === "admin";
  for (const c of bank.classes) {
    const tr = document.createElement("tr");
    tr.dataset.name = c.name;
    tr.append(text("td", c.name), text("td", c.kind), text("td", c.severity), text("td", described(c)),
      text("td", c.cameras.length ? c.cameras.join(", ") : "every camera"));
    if (admin) tr.addEventListener("click", () => editClass(c));
    body.append(tr);
  }
  $("class-form").hidden = !admin;
  const history = await api("/api/v1/classes/history?limit=20");
  const list = $("class-history");
  list.replaceChildren();
  if (history.ok) {
    for (const change of (await history.json()).items) {
      const li = text("li", `${when(change.at)}: ${change.by} ${change.action}d ${change.class_name} (version ${change.version})`);
      const diff = text("pre", change.diff);
      li.append(diff);
      list.append(li);
    }
  }
  if (!list.children.length) list.append(text("li", "No change through this page yet."));
}

function editClass(c) {
  const f = $("class-form").elements;
  $("class-form").dataset.editing = c ? c.name : "";
  $("class-form-title").textContent = c ? `Class ${c.name}` : "New class";
  f.name.value = c ? c.name : "";
  f.name.readOnly = Boolean(c);
  f.kind.value = c ? c.kind : "hazard";
  f.severity.value = c ? c.severity : "warning";
  f.prompts.value = c ? c.prompts.join("\n") : "";
  const examples = $("class-examples");
  examples.hidden = !(c && c.examples);
  examples.textContent = c && c.examples
    ? `Described by ${c.examples.length} example(s): ${c.examples.map((e) => e.source).join(", ")} (kept when saved)`
    : "";
  f.cameras.value = c ? c.cameras.join(", ") : "";
  f.description.value = c ? c.description || "" : "";
  $("class-delete").hidden = !c;
  $("class-status").textContent = "";
}

async function saveClass(form) {
  const f = form.elements;
  const editing = form.dataset.editing;
  const body = {
    kind: f.kind.value, severity: f.severity.value,
    prompts: f.prompts.value.split("\n").map((p) => p.trim()).filter(Boolean),
    cameras: f.cameras.value.split(",").map((p) => p.trim()).filter(Boolean),
    description: f.description.value.trim(),
  };
  const answer = editing
    ? await api(`/api/v1/classes/${encodeURIComponent(editing)}`, { method: "PUT", body })
    : await api("/api/v1/classes", { method: "POST", body: { name: f.name.value.trim(), ...body } });
  await showClassAnswer(answer, editing ? `Class ${editing} saved` : `Class ${f.name.value.trim()} added`);
}

async function showClassAnswer(answer, done) {
  const status = $("class-status");
  if (!answer.ok) {
    const body = await answer.json().catch(() => ({}));
    const detail = Array.isArray(body.detail) ? body.detail.map((d) => d.msg).join("; ") : body.detail;
    status.textContent = `Not saved: ${detail || answer.statusText}`;
    return;
  }
  await loadClasses();
  status.textContent = `${done}; scoring follows within seconds.`;
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
      reviewed: f.reviewed.value, since: isoTime(f.since.value), until: isoTime(f.until.value),
      before: "", after: "", event: "" });
    loadEvents();
  });
  $("prev").addEventListener("click", () => {
    if (state.newer !== null) { setParams({ after: state.newer, before: "", event: "" }); loadEvents(); }
  });
  $("next").addEventListener("click", () => {
    if (state.older !== null) { setParams({ before: state.older, after: "", event: "" }); loadEvents(); }
  });
  $("search-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const f = e.target.elements;
    const file = f.file.files[0];
    if (file) { f.file.value = ""; searchImage(file, f); return; }
    setParams({ view: "search", q: f.q.value.trim(), camera: f.camera.value.trim(), since: isoTime(f.since.value),
      until: isoTime(f.until.value), like_event: "", like_keyframe: "" });
    loadSearch();
  });
  $("class-form").addEventListener("submit", (e) => { e.preventDefault(); saveClass(e.target); });
  $("class-new").addEventListener("click", () => editClass(null));
  $("class-delete").addEventListener("click", async () => {
    const name = $("class-form").dataset.editing;
    if (!name) return;
    const answer = await api(`/api/v1/classes/${encodeURIComponent(name)}`, { method: "DELETE" });
    await showClassAnswer(answer, `Class ${name} deleted`);
    if (answer.ok) editClass(null);
  });
  $("detail-similar").addEventListener("click", () => {
    if (state.current) window.location.search = `?${new URLSearchParams({ view: "search", like_event: state.current.uuid })}`;
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
