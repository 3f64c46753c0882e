// The watchgate dashboard: a live key browser (a snapshot watch), a value
// editor with conditional writes, an event log of a chosen range, the
// connection's state and the store's status. Everything goes through
// watchgate.js: one WebSocket for every watch, REST for the rest.
//
// On a server with access control it starts with a sign-in form: the
// token is sent once (POST /v1/session) and the server keeps it in an
// HttpOnly cookie, which the REST calls, the WebSocket and EventSource all
// carry. A 401 later (expired, revoked, signed out elsewhere) brings the
// form back; a 403 says which keys the token may not touch.

import {
  Watchgate, WatchgateError, keyId, keyFromId, keyText, valueText, toBase64, fromBase64,
} from "../watchgate.js";

const $ = (id) => document.getElementById(id);
const wg = new Watchgate();

// Most rows the key table and entries the event log show.
const MAX_ROWS = 500;
const MAX_LOG = 1000;
const STATUS_EVERY_MS = 2000;

// ---- helpers ----

/** How a key is shown: its text, or b64:… for a key that is not UTF-8. */
function showKey(kv) {
  const t = keyText(kv);
  return t !== null ? t : "b64:" + kv.key_b64;
}

/** A short preview of a kv's value. */
function preview(kv, max = 80) {
  const t = valueText(kv);
  if (t === null) {
    if (kv.value_b64 === undefined) return "";
    return `⟨${fromBase64(kv.value_b64).length} bytes, binary⟩`;
  }
  const one = t.replace(/\s+/g, " ");
  return one.length > max ? one.slice(0, max - 1) + "…" : one;
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) e.append(c);
  return e;
}

function humanBytes(n) {
  if (n < 1024) return n + " B";
  const u = ["KiB", "MiB", "GiB", "TiB"];
  let i = -1;
  do { n /= 1024; i++; } while (n >= 1024 && i < u.length - 1);
  return n.toFixed(n < 10 ? 1 : 0) + " " + u[i];
}

/** Fills node with texts separated by dots, each kept on one line. */
function parts(node, texts) {
  const out = [];
  texts.forEach((t, i) => {
    if (i) out.push(" · ");
    out.push(el("span", { class: "part" }, t));
  });
  node.replaceChildren(...out);
}

/** The text prefixes of a session's read or write list ("" is every key;
 * prefixes that are not UTF-8 are shown in base64). */
function prefixes(list) {
  return (list || []).map((p) => (p.prefix !== undefined ? p.prefix : "b64:" + p.prefix_b64));
}

/** A list of prefixes for a sentence. */
function showPrefixes(list) {
  const ps = prefixes(list);
  if (!ps.length) return "no keys";
  if (ps.includes("")) return "every key";
  return "keys under " + ps.map((p) => `“${p}”`).join(", ");
}

function errorText(err) {
  if (err instanceof WatchgateError && err.forbidden) {
    return `403 Forbidden: ${err.detail || err.title}`;
  }
  if (err instanceof WatchgateError) {
    return err.status ? `${err.status} ${err.title}: ${err.detail}` : `${err.title}: ${err.detail}`;
  }
  return String(err && err.message || err);
}

/** Keeps a few settings in the page's query string, so that a reload or a
 * bookmark comes back to the same view. */
function saveParams() {
  const q = new URLSearchParams();
  if (keyPrefix) q.set("prefix", keyPrefix);
  if (log.watch) {
    q.set("log", log.key);
    if (!log.prefix) q.set("log_prefix", "false");
  }
  const s = q.toString();
  history.replaceState(null, "", location.pathname + (s ? "?" + s : ""));
}

// ---- connection state ----

const conn = $("conn");
let outage = false;
wg.addEventListener("state", (e) => {
  const d = e.detail;
  conn.dataset.state = d.state;
  switch (d.state) {
    case "connecting": conn.textContent = "connecting…"; break;
    case "connected":
      conn.textContent = d.resumed
        ? (d.resumedFrom !== null ? `connected · resumed from revision ${d.resumedFrom}` : "connected · reconnected")
        : "connected";
      if (d.resumed) conn.dataset.resumedFrom = d.resumedFrom ?? "";
      break;
    case "reconnecting":
      conn.textContent = `reconnecting in ${(d.delay / 1000).toFixed(1)}s (attempt ${d.attempt})…`;
      break;
    case "closed": conn.textContent = "closed"; break;
    case "signedOut": conn.textContent = "signed out"; break;
    case "expired": conn.textContent = "session expired"; break;
    default: conn.textContent = d.state;
  }
  if (d.state === "signedOut" && !signingOut) showSignIn("You are not signed in (or your token was revoked). Sign in again.");
  if (d.state === "expired") showSignIn("Your session has expired (" + (d.reason || "access expired") + "). Sign in again.");
  // One marker per outage, however many attempts it takes.
  if (d.state === "reconnecting" && !outage) {
    outage = true;
    if (log.watch) logMarker("connection lost; reconnecting", "lost");
  }
  if (d.state === "connected") {
    outage = false;
    if (d.resumed && log.watch) logMarker(`reconnected; resuming from revision ${log.watch.revision + 1}`, "resumed");
  }
});

// ---- store status ----

let statusTimer = null;
let lastStatus = null;

async function refreshStatus() {
  clearTimeout(statusTimer);
  if (!running) return;
  try {
    const s = await wg.status();
    if (!running) return;
    lastStatus = s;
    $("st-revision").textContent = s.revision;
    $("st-compact").textContent = s.compact_revision;
    $("st-keys").textContent = s.keys;
    $("st-db").textContent = humanBytes(s.db_size_bytes);
    const w = s.watchers || {};
    parts($("st-watchers"), [`${w.synced ?? 0} synced`, `${w.unsynced ?? 0} unsynced`, `${w.victim ?? 0} victim`]);
    const c = s.connections || {};
    parts($("st-conns"), [`${c.sse ?? 0} SSE`, `${c.ws ?? 0} WebSocket`]);
    $("st-version").textContent = s.version;
    $("compact-rev").max = s.revision;
    $("status-panel").classList.remove("down");
  } catch (err) {
    if (authLost(err) || !running) return;
    $("status-panel").classList.add("down");
    $("status-msg").textContent = "status unavailable: " + errorText(err);
    $("status-msg").dataset.kind = "error";
  }
  statusTimer = setTimeout(refreshStatus, STATUS_EVERY_MS);
}

let compactArmed = null;
$("compact-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const rev = Number($("compact-rev").value);
  const btn = $("compact-btn");
  const msg = $("status-msg");
  if (!Number.isInteger(rev) || rev < 1) return;
  // A second click confirms: compaction cannot be undone.
  if (compactArmed !== rev) {
    compactArmed = rev;
    btn.textContent = `Confirm: drop history before ${rev}`;
    btn.classList.add("danger");
    setTimeout(() => { if (compactArmed === rev) disarmCompact(); }, 5000);
    return;
  }
  disarmCompact();
  try {
    await wg.compact(rev);
    msg.textContent = `Compacted: history before revision ${rev} is gone.`;
    msg.dataset.kind = "ok";
  } catch (err) {
    if (authLost(err)) return;
    msg.textContent = "Compaction failed: " + errorText(err);
    msg.dataset.kind = err.forbidden ? "forbidden" : "error";
  }
  refreshStatus();
});

function disarmCompact() {
  compactArmed = null;
  $("compact-btn").textContent = "Compact";
  $("compact-btn").classList.remove("danger");
}

// ---- key browser ----

let keyPrefix = "";
let snap = null;
let renderQueued = false;
const flashing = new Set();

function browse(prefix) {
  keyPrefix = prefix;
  $("prefix").value = prefix;
  if (snap) snap.cancel();
  $("keys-info").textContent = "loading…";
  delete $("keys-info").dataset.kind;
  delete $("keys-info").dataset.revision;
  snap = wg.snapshot({ key: prefix, prefix: true });
  const mine = snap;
  snap.addEventListener("change", (e) => {
    if (mine !== snap) return;
    if (!e.detail.reset) for (const ev of e.detail.events) flashing.add(keyId(ev.kv));
    queueRender();
    editorSawChange(e.detail);
  });
  let failed = false;
  snap.addEventListener("end", (e) => {
    if (mine === snap && !failed) $("keys-info").textContent = "the key watch ended: " + e.detail.reason;
  });
  snap.addEventListener("error", (e) => {
    if (mine !== snap) return;
    failed = true;
    const info = $("keys-info");
    if (e.detail.forbidden) {
      info.textContent = `Not allowed to read keys with prefix “${prefix}”: ${errorText(e.detail)}. ` +
        `Token “${session ? session.name : "?"}” may read ${session ? showPrefixes(session.read) : "other keys"}.`;
      info.dataset.kind = "forbidden";
    } else {
      info.textContent = "error: " + errorText(e.detail);
      info.dataset.kind = "error";
    }
    $("keys").tBodies[0].replaceChildren();
  });
  saveParams();
}

function queueRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(renderKeys);
}

function renderKeys() {
  renderQueued = false;
  if (!snap) return;
  const body = $("keys").tBodies[0];
  const kvs = snap.sorted();
  const rows = [];
  for (const kv of kvs.slice(0, MAX_ROWS)) {
    const id = keyId(kv);
    const tr = el("tr", { "data-key": id, tabIndex: 0, class: flashing.has(id) ? "flash" : "" },
      el("td", { class: "key" + (kv.key === undefined ? " binary" : "") }, showKey(kv)),
      el("td", { class: "val" }, preview(kv)),
      el("td", { class: "num" }, String(kv.mod_revision)),
      el("td", { class: "num" }, String(kv.version)));
    tr.dataset.mod = kv.mod_revision;
    tr.dataset.value = kv.value ?? "";
    if (editing && editing.id === id) tr.classList.add("selected");
    rows.push(tr);
  }
  body.replaceChildren(...rows);
  flashing.clear();
  const scope = keyPrefix ? `with prefix “${keyPrefix}”` : "";
  const shown = kvs.length > MAX_ROWS ? ` (showing the first ${MAX_ROWS})` : "";
  $("keys-info").textContent = `${kvs.length} key${kvs.length === 1 ? "" : "s"} ${scope} at revision ${snap.revision}${shown}`;
  $("keys-info").dataset.revision = snap.revision;
}

$("prefix-form").addEventListener("submit", (e) => {
  e.preventDefault();
  browse($("prefix").value);
});

$("keys").addEventListener("click", (e) => {
  const tr = e.target.closest("tr[data-key]");
  if (tr) openKey(tr.dataset.key);
});
$("keys").addEventListener("keydown", (e) => {
  const tr = e.target.closest("tr[data-key]");
  if (tr && (e.key === "Enter" || e.key === " ")) {
    e.preventDefault();
    openKey(tr.dataset.key);
  }
});

// ---- editor ----

/** What the editor shows: id and key of the key (null id for a new key),
 * base: the mod_revision the edit started from (0: create). */
let editing = null;
let deleteArmed = false;

function showEditor(on) {
  $("editor").hidden = !on;
  $("editor-empty").hidden = on;
  $("editor-close").hidden = !on;
}

function setValueBox(kv) {
  const box = $("edit-value");
  if (kv && kv.value === undefined && kv.value_b64 !== undefined) {
    box.value = kv.value_b64;
    $("edit-b64").checked = true;
  } else {
    box.value = kv ? kv.value ?? "" : "";
    $("edit-b64").checked = false;
  }
}

function showMeta(kv) {
  $("edit-meta").textContent = kv
    ? `created at revision ${kv.create_revision} · modified at revision ${kv.mod_revision} · version ${kv.version}`
    : "";
}

function clearMessages() {
  $("conflict").hidden = true;
  $("stale").hidden = true;
  $("edit-msg").textContent = "";
  delete $("edit-msg").dataset.kind;
}

function loadIntoEditor(kv) {
  editing = { id: keyId(kv), key: keyFromId(keyId(kv)), base: kv.mod_revision, kv };
  $("new-key-row").hidden = true;
  $("edit-keyname").hidden = false;
  $("edit-keyname").textContent = showKey(kv);
  $("edit-delete").hidden = false;
  showMeta(kv);
  setValueBox(kv);
  clearMessages();
  disarmDelete();
  showEditor(true);
  queueRender();
}

function openKey(id) {
  const kv = snap && snap.map.get(id);
  if (kv) {
    loadIntoEditor(kv);
    return;
  }
  reload(keyFromId(id));
}

async function reload(key = editing && editing.key) {
  if (key === null || key === undefined) return;
  try {
    const r = await wg.get(key);
    loadIntoEditor(r.kv);
  } catch (err) {
    if (authLost(err)) return;
    setMsg(err.notFound ? "This key no longer exists." : "Reload failed: " + errorText(err), err.forbidden ? "forbidden" : "error");
  }
}

function newKey() {
  editing = { id: null, key: null, base: 0, kv: null };
  $("new-key-row").hidden = false;
  $("edit-keyname").hidden = true;
  $("edit-key").value = keyPrefix;
  $("edit-delete").hidden = true;
  showMeta(null);
  setValueBox(null);
  clearMessages();
  showEditor(true);
  $("edit-key").focus();
  queueRender();
}

function setMsg(text, kind) {
  $("edit-msg").textContent = text;
  $("edit-msg").dataset.kind = kind;
}

/** The bytes or text to write, from the value box. */
function valueToWrite() {
  const v = $("edit-value").value;
  if (!$("edit-b64").checked) return v;
  return fromBase64(v.replace(/\s+/g, ""));
}

async function save(condition) {
  if (!editing) return;
  let value;
  try {
    value = valueToWrite();
  } catch {
    setMsg("The value is not valid base64.", "error");
    return;
  }
  let key = editing.key;
  if (editing.id === null) {
    key = $("edit-key").value;
    if (key === "") {
      setMsg("Give the key a name.", "error");
      return;
    }
  }
  const cond = condition || (editing.base ? { ifMatch: editing.base } : { ifNoneMatch: "*" });
  $("edit-save").disabled = true;
  try {
    const r = await wg.put(key, value, cond);
    const kv = { ...r.kv };
    if (typeof value === "string") kv.value = value;
    else kv.value_b64 = toBase64(value);
    editing = { id: keyId(kv), key: keyFromId(keyId(kv)), base: r.kv.mod_revision, kv };
    $("new-key-row").hidden = true;
    $("edit-keyname").hidden = false;
    $("edit-keyname").textContent = showKey(kv);
    $("edit-delete").hidden = false;
    showMeta(kv);
    clearMessages();
    setMsg(`Saved at revision ${r.revision}.`, "ok");
    queueRender();
  } catch (err) {
    if (authLost(err)) return;
    if (err instanceof WatchgateError && err.conflict) showConflict(err, key);
    else if (err instanceof WatchgateError && err.forbidden) showForbidden("Save", err, "write");
    else setMsg("Save failed: " + errorText(err), "error");
  } finally {
    $("edit-save").disabled = false;
  }
}

/** Shows a 403: the token may not touch the key; nothing was written. */
function showForbidden(what, err, mode) {
  const allowed = session ? ` Token “${session.name}” may ${mode} ${showPrefixes(mode === "write" ? session.write : session.read)}.` : "";
  setMsg(`${what} refused. ${errorText(err)}.${allowed} Nothing was changed.`, "forbidden");
}

/** Shows a 412: the key changed (or was created or deleted) since the edit
 * started; err.kv is its current version. */
function showConflict(err, key) {
  const theirs = err.kv;
  const name = editing.id === null ? key : showKey(editing.kv);
  let text;
  if (!theirs) {
    text = `Conflict: “${name}” was deleted on the server since you loaded it at revision ${editing.base}. Your edit was not saved.`;
  } else if (editing.base === 0) {
    text = `Conflict: “${name}” already exists (modified at revision ${theirs.mod_revision}, version ${theirs.version}). Your value was not saved.`;
  } else {
    text = `Conflict: someone else changed “${name}” since you loaded it at revision ${editing.base}: it is now at revision ${theirs.mod_revision}, version ${theirs.version}. Your edit was not saved.`;
  }
  editing.conflict = { kv: theirs || null, key };
  $("conflict-text").textContent = text;
  $("conflict-theirs-wrap").hidden = !theirs;
  $("conflict-theirs").textContent = theirs ? (theirs.value ?? `base64: ${theirs.value_b64 ?? ""}`) : "";
  $("conflict-overwrite").textContent = theirs ? "Overwrite with mine" : "Recreate with mine";
  $("conflict").hidden = false;
  $("stale").hidden = true;
  $("edit-msg").textContent = "";
}

$("conflict-load").addEventListener("click", () => {
  const c = editing && editing.conflict;
  if (!c) return;
  if (c.kv) loadIntoEditor(c.kv);
  else {
    showEditor(false);
    editing = null;
    queueRender();
  }
});

$("conflict-overwrite").addEventListener("click", () => {
  const c = editing && editing.conflict;
  if (!c) return;
  if (editing.id === null) {
    editing.key = c.key;
  }
  // Overwrite exactly the version that was shown; if it changed again,
  // that is a new conflict.
  save(c.kv ? { ifMatch: c.kv.mod_revision } : { ifNoneMatch: "*" });
});

/** Tells the user, before they save, that the key they edit has changed. */
function editorSawChange(change) {
  if (!editing || editing.id === null || !$("conflict").hidden) return;
  const now = snap.map.get(editing.id);
  if (change.reset || change.events.some((ev) => keyId(ev.kv) === editing.id)) {
    const stale = $("stale");
    if (!now) {
      stale.textContent = "This key has been deleted on the server.";
      stale.hidden = false;
    } else if (now.mod_revision !== editing.base) {
      stale.replaceChildren(`Changed on the server at revision ${now.mod_revision} since you loaded it. Saving will report a conflict. `,
        el("button", { type: "button", class: "link", onclick: () => loadIntoEditor(now) }, "Load the new value"));
      stale.hidden = false;
    } else {
      stale.hidden = true;
    }
  }
}

$("editor").addEventListener("submit", (e) => {
  e.preventDefault();
  save();
});
$("edit-reload").addEventListener("click", () => (editing && editing.id !== null ? reload() : newKey()));
$("edit-b64").addEventListener("change", () => {
  const box = $("edit-value");
  try {
    box.value = $("edit-b64").checked
      ? toBase64(new TextEncoder().encode(box.value))
      : new TextDecoder("utf-8", { fatal: true }).decode(fromBase64(box.value.replace(/\s+/g, "")));
  } catch {
    $("edit-b64").checked = !$("edit-b64").checked;
    setMsg("This value is not valid UTF-8 text; it stays in base64.", "error");
  }
});

$("edit-delete").addEventListener("click", async () => {
  if (!editing || editing.id === null) return;
  const btn = $("edit-delete");
  if (!deleteArmed) {
    deleteArmed = true;
    btn.textContent = "Confirm delete";
    setTimeout(disarmDelete, 4000);
    return;
  }
  disarmDelete();
  try {
    const r = await wg.delete(editing.key, { ifMatch: editing.base });
    setMsg(`Deleted at revision ${r.revision}.`, "ok");
    editing = null;
    showEditor(false);
    queueRender();
  } catch (err) {
    if (authLost(err)) return;
    if (err instanceof WatchgateError && err.conflict) showConflict(err, editing.key);
    else if (err instanceof WatchgateError && err.forbidden) showForbidden("Delete", err, "write");
    else setMsg("Delete failed: " + errorText(err), "error");
  }
});

function disarmDelete() {
  deleteArmed = false;
  $("edit-delete").textContent = "Delete";
}

$("editor-close").addEventListener("click", () => {
  editing = null;
  showEditor(false);
  queueRender();
});
$("new-key").addEventListener("click", newKey);

// ---- event log ----

const log = { watch: null, key: "", prefix: true };

function logEntry(node) {
  const list = $("log");
  list.prepend(node);
  while (list.childElementCount > MAX_LOG) list.lastElementChild.remove();
}

function logMarker(text, kind) {
  logEntry(el("li", { class: "marker", "data-kind": kind }, el("span", { class: "time" }, new Date().toLocaleTimeString()), " " + text));
}

function startLog(key, prefix, rev) {
  stopLog();
  log.key = key;
  log.prefix = prefix;
  const scope = prefix ? (key ? `keys with prefix “${key}”` : "every key") : `key “${key}”`;
  const w = wg.watch({ key, prefix, rev: rev || 0 });
  log.watch = w;
  $("log-info").textContent = `starting a watch of ${scope}…`;
  w.addEventListener("created", (e) => {
    if (log.watch !== w) return;
    $("log-info").textContent = `watching ${scope} · through revision ${w.revision}`;
    $("log-info").dataset.revision = w.revision;
    logMarker(`watching ${scope} from revision ${w.revision + 1}`, "created");
    void e;
  });
  w.addEventListener("events", (e) => {
    if (log.watch !== w) return;
    for (const ev of e.detail.events) {
      const kv = ev.kv;
      const li = el("li", { class: "event " + ev.type, "data-rev": kv.mod_revision, "data-type": ev.type, "data-key": keyId(kv) },
        el("span", { class: "rev" }, String(kv.mod_revision)),
        el("span", { class: "type" }, ev.type),
        el("span", { class: "key" + (kv.key === undefined ? " binary" : "") }, showKey(kv)),
        el("span", { class: "val" }, ev.type === "put" ? preview(kv, 60) : ""));
      if (kv.value !== undefined) li.dataset.value = kv.value;
      logEntry(li);
    }
    $("log-info").textContent = `watching ${scope} · through revision ${w.revision}`;
    $("log-info").dataset.revision = w.revision;
  });
  w.addEventListener("compacted", (e) => {
    if (log.watch !== w) return;
    logMarker(`history before revision ${e.detail.compact_revision} was compacted; this watch has ended. Watch again to continue from now.`, "compacted");
  });
  w.addEventListener("error", (e) => {
    if (log.watch !== w) return;
    logMarker("error: " + errorText(e.detail), "error");
  });
  w.addEventListener("end", (e) => {
    if (log.watch !== w) return;
    $("log-info").textContent = `not watching (${e.detail.reason})`;
    log.watch = null;
    $("log-start").disabled = false;
    $("log-stop").disabled = true;
    saveParams();
  });
  $("log-stop").disabled = false;
  saveParams();
}

function stopLog() {
  if (log.watch) {
    const w = log.watch;
    log.watch = null;
    w.cancel();
    logMarker("stopped", "stopped");
  }
  $("log-info").textContent = "not watching";
  $("log-stop").disabled = true;
  saveParams();
}

$("log-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const rev = $("log-rev").value === "" ? 0 : Number($("log-rev").value);
  startLog($("log-key").value, $("log-prefix").checked, rev);
});
$("log-stop").addEventListener("click", stopLog);
$("log-clear").addEventListener("click", () => $("log").replaceChildren());

// ---- session ----

/** The signed-in session (GET /v1/session); null before it is known. */
let session = null;
/** True while the panels are live (after sign-in). */
let running = false;
/** True while the sign-out button's request runs, so that the "signedOut"
 * state it causes does not read as a lost session. */
let signingOut = false;

function isAnonymous(s) {
  return s && s.name === "anonymous" && !s.expires;
}

/** True (and back to the sign-in form) when err is a 401: the session has
 * ended. */
function authLost(err) {
  if (!(err instanceof WatchgateError && err.unauthorized)) return false;
  showSignIn("Your session has ended (" + (err.detail || "unauthorized") + "). Sign in again.");
  return true;
}

/** Readable keys to browse first: the page's prefix when the token may read
 * it, otherwise the first text prefix it may read. */
function firstPrefix(wanted) {
  const reads = session ? prefixes(session.read) : [""];
  if (wanted !== null && (reads.some((p) => wanted.startsWith(p)) || !reads.length)) return wanted;
  if (reads.includes("")) return wanted ?? "";
  const text = session.read.find((p) => p.prefix !== undefined);
  return text ? text.prefix : (wanted ?? "");
}

/** Shows the panels and starts their watches and the status poll. */
function startDashboard(s, params = new URLSearchParams(location.search)) {
  session = s;
  running = true;
  $("signin").hidden = true;
  $("app").hidden = false;
  $("who").hidden = !s || isAnonymous(s);
  $("who-name").textContent = s ? s.name : "";
  $("who").title = s ? `may read ${showPrefixes(s.read)}; may write ${showPrefixes(s.write)}` + (s.expires ? `; expires ${s.expires}` : "") : "";
  browse(firstPrefix(params.get("prefix")));
  if (params.has("log")) {
    $("log-key").value = params.get("log");
    $("log-prefix").checked = params.get("log_prefix") !== "false";
    startLog(params.get("log"), params.get("log_prefix") !== "false", 0);
  }
  refreshStatus();
}

/** Stops every watch and poll and clears what the panels show. */
function stopDashboard() {
  running = false;
  clearTimeout(statusTimer);
  if (snap) {
    const s = snap;
    snap = null;
    s.cancel();
  }
  if (log.watch) {
    const w = log.watch;
    log.watch = null;
    w.cancel();
  }
  $("log-stop").disabled = true;
  $("log-info").textContent = "not watching";
  $("log").replaceChildren();
  $("keys").tBodies[0].replaceChildren();
  $("keys-info").textContent = "";
  delete $("keys-info").dataset.revision;
  editing = null;
  showEditor(false);
  for (const id of ["st-revision", "st-compact", "st-keys", "st-db", "st-watchers", "st-conns", "st-version"]) $(id).textContent = "–";
  $("status-msg").textContent = "";
}

/** Replaces the panels with the sign-in form, with message (if any). */
function showSignIn(message) {
  const wasRunning = running;
  stopDashboard();
  session = null;
  $("app").hidden = true;
  $("who").hidden = true;
  $("signin").hidden = false;
  if (wg.state !== "expired") {
    conn.dataset.state = "signedOut";
    conn.textContent = "signed out";
  }
  const msg = $("signin-msg");
  msg.textContent = message || "";
  if (message) msg.dataset.kind = "error";
  else delete msg.dataset.kind;
  if (wasRunning || !message) $("signin-token").focus();
}

$("signin-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const box = $("signin-token");
  const btn = $("signin-btn");
  const msg = $("signin-msg");
  btn.disabled = true;
  msg.textContent = "Signing in…";
  delete msg.dataset.kind;
  try {
    const s = await wg.signIn(box.value);
    box.value = "";
    msg.textContent = "";
    startDashboard(s);
  } catch (err) {
    msg.dataset.kind = "error";
    msg.textContent = err instanceof WatchgateError && err.unauthorized
      ? `Sign-in failed: ${err.detail || "the token is not valid"}. Check the token and try again.`
      : "Sign-in failed: " + errorText(err);
    box.select();
  } finally {
    btn.disabled = false;
  }
});

$("signout").addEventListener("click", async () => {
  signingOut = true;
  try {
    await wg.signOut();
    showSignIn("");
    $("signin-msg").textContent = "Signed out.";
    $("signin-msg").dataset.kind = "ok";
  } catch (err) {
    $("status-msg").textContent = "Sign-out failed: " + errorText(err);
    $("status-msg").dataset.kind = "error";
  } finally {
    signingOut = false;
  }
});

// ---- start ----

(async () => {
  try {
    startDashboard(await wg.session());
  } catch (err) {
    if (err instanceof WatchgateError && err.unauthorized) showSignIn("");
    // Anything else (the server is down): show the panels, which say so
    // and recover when it is back.
    else startDashboard(null);
  }
})();
