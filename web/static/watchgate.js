// watchgate.js: the browser client of a watchgate server.
//
// A dependency-free ES module. `Watchgate` wraps the REST API (get, range
// with paging, put with If-Match, delete, txn, status, compact) and runs any
// number of watches over ONE multiplexed WebSocket (subprotocol
// watchgate.v1). When the socket drops it reconnects with jittered
// exponential backoff and resumes every watch from the last revision it
// completed + 1, so no event is lost and none is repeated. `Snapshot` keeps
// a live replica of a key range as a Map. `EventStream` is the simple case:
// one watch over Server-Sent Events, resumed by the browser's Last-Event-ID.
//
//   import { Watchgate } from "/watchgate.js";
//   const wg = new Watchgate();
//   await wg.put("config/a", "on");
//   const w = wg.watch({ key: "config/", prefix: true });
//   w.addEventListener("events", (e) => console.log(e.detail.events));
//
// Keys and values: wherever a key or value is given, a string is sent as
// its UTF-8 bytes and a Uint8Array (or ArrayBuffer) as its bytes. The server
// sends a key or value as a string when it is valid UTF-8 and otherwise as
// key_b64 / value_b64 (standard base64); the kv objects this module returns
// are the server's JSON unchanged. Use keyBytes, keyText, valueBytes,
// valueText and keyId to read them without caring which form came.

const encoder = new TextEncoder();

/** Prefix of keyId for keys that are not valid UTF-8. A lone surrogate
 * cannot occur in a string decoded from UTF-8, so it never collides with a
 * text key. */
const BINARY_KEY_MARK = "\uDBFF";

/**
 * Bytes of a key or value given as a string (UTF-8), Uint8Array or
 * ArrayBuffer.
 * @param {string|Uint8Array|ArrayBuffer} v
 * @returns {Uint8Array}
 */
export function toBytes(v) {
  if (typeof v === "string") return encoder.encode(v);
  if (v instanceof Uint8Array) return v;
  if (v instanceof ArrayBuffer) return new Uint8Array(v);
  if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  throw new TypeError("watchgate: a key or value must be a string, Uint8Array or ArrayBuffer");
}

/**
 * Standard base64 of bytes.
 * @param {Uint8Array} bytes
 * @returns {string}
 */
export function toBase64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

/**
 * Bytes of a standard base64 string.
 * @param {string} b64
 * @returns {Uint8Array}
 */
export function fromBase64(b64) {
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/**
 * The key of a kv as bytes, whichever form (key or key_b64) the server used.
 * @param {KeyValue} kv
 * @returns {Uint8Array}
 */
export function keyBytes(kv) {
  return kv.key !== undefined ? encoder.encode(kv.key) : fromBase64(kv.key_b64);
}

/**
 * The key of a kv as text, or null when it is not valid UTF-8 (key_b64).
 * @param {KeyValue} kv
 * @returns {string|null}
 */
export function keyText(kv) {
  return kv.key !== undefined ? kv.key : null;
}

/**
 * The value of a kv as bytes, or null when the kv carries no value (a
 * delete's kv, or a keys_only read).
 * @param {KeyValue} kv
 * @returns {Uint8Array|null}
 */
export function valueBytes(kv) {
  if (kv.value !== undefined) return encoder.encode(kv.value);
  if (kv.value_b64 !== undefined) return fromBase64(kv.value_b64);
  return null;
}

/**
 * The value of a kv as text, or null when it is absent or not valid UTF-8
 * (value_b64).
 * @param {KeyValue} kv
 * @returns {string|null}
 */
export function valueText(kv) {
  return kv.value !== undefined ? kv.value : null;
}

/**
 * A string that identifies the key of a kv, fit for a Map key: the key
 * itself when it is text, otherwise a marker (a lone surrogate, which no
 * text key contains) followed by its base64. Snapshot.map is keyed by it.
 * @param {KeyValue} kv
 * @returns {string}
 */
export function keyId(kv) {
  return kv.key !== undefined ? kv.key : BINARY_KEY_MARK + kv.key_b64;
}

/**
 * The key a keyId stands for: a string for a text key, bytes otherwise.
 * @param {string} id
 * @returns {string|Uint8Array}
 */
export function keyFromId(id) {
  return id.startsWith(BINARY_KEY_MARK) ? fromBase64(id.slice(BINARY_KEY_MARK.length)) : id;
}

/**
 * Orders keys as the server does (bytewise ascending); for sorting kvs.
 * @param {string|Uint8Array} a
 * @param {string|Uint8Array} b
 * @returns {number}
 */
export function compareKeys(a, b) {
  const x = toBytes(a), y = toBytes(b);
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

/**
 * The smallest key greater than every key with this prefix, as the server
 * computes a prefix's range end; the empty array when there is none
 * (the prefix is empty or all 0xff).
 * @param {string|Uint8Array} prefix
 * @returns {Uint8Array}
 */
export function prefixEnd(prefix) {
  const b = Uint8Array.from(toBytes(prefix));
  for (let i = b.length - 1; i >= 0; i--) {
    if (b[i] < 0xff) {
      b[i]++;
      return b.slice(0, i + 1);
    }
  }
  return new Uint8Array(0);
}

/** Sets obj[name] to a text key/value, or obj[name_b64] to the base64 of
 * bytes. */
function setBytesField(obj, name, v) {
  if (typeof v === "string") obj[name] = v;
  else obj[name + "_b64"] = toBase64(toBytes(v));
}

/** Percent-encodes a key for a URL path. Everything but unreserved ASCII is
 * escaped, "/" included, so that the browser's path normalisation cannot
 * touch a key: the server decodes the whole rest of the path. */
function pathKey(key) {
  const b = toBytes(key);
  let s = "";
  for (const c of b) {
    const ch = String.fromCharCode(c);
    s += /[A-Za-z0-9\-._~]/.test(ch) ? ch : "%" + c.toString(16).toUpperCase().padStart(2, "0");
  }
  return s;
}

/** Keys that a browser cannot put in a URL path: it resolves "." and ".."
 * segments (even percent-encoded), so these go through POST /v1/txn. */
function isDotKey(key) {
  const b = toBytes(key);
  return (b.length === 1 && b[0] === 0x2e) || (b.length === 2 && b[0] === 0x2e && b[1] === 0x2e);
}

/**
 * @typedef {Object} KeyValue
 * A key-value as the server sends it. Exactly one of key / key_b64 is
 * present, and at most one of value / value_b64 (none for a delete's kv or
 * a keys_only read).
 * @property {string} [key]
 * @property {string} [key_b64]
 * @property {string} [value]
 * @property {string} [value_b64]
 * @property {number} [create_revision]
 * @property {number} mod_revision
 * @property {number} [version]
 * @property {KeyValue} [prev_kv] (SSE, with prevKv)
 */

/**
 * @typedef {Object} WatchEvent
 * @property {"put"|"delete"} type
 * @property {KeyValue} kv
 * @property {KeyValue} [prev_kv]
 */

/**
 * An error answered by the server (an RFC 9457 problem+json document,
 * whose members are copied onto the error), or a network failure (status
 * 0). Members beyond the standard ones are there when the server sent them:
 * revision and compact_revision on errors about revisions, kv (the current
 * key-value) on a 412 Precondition Failed.
 */
export class WatchgateError extends Error {
  /**
   * @param {Object} problem the problem document
   * @param {{cause?: unknown, headers?: Headers}} [opts]
   */
  constructor(problem, opts = {}) {
    super(problem.detail || problem.title || "watchgate: request failed", opts.cause ? { cause: opts.cause } : undefined);
    this.name = "WatchgateError";
    /** The problem document as received. */
    this.problem = problem;
    /** @type {string} a URI naming the kind of problem */
    this.type = problem.type || "about:blank";
    /** @type {string} */
    this.title = problem.title || "";
    /** @type {number} the HTTP status; 0 for a network failure */
    this.status = problem.status || 0;
    /** @type {string} */
    this.detail = problem.detail || "";
    for (const [k, v] of Object.entries(problem)) {
      if (!(k in this)) this[k] = v;
    }
    /** @type {number|undefined} X-Revision of the response */
    this.headerRevision = headerInt(opts.headers, "X-Revision");
    /** @type {number|undefined} X-Compact-Revision of the response */
    this.headerCompactRevision = headerInt(opts.headers, "X-Compact-Revision");
  }

  /** True for 412: a conditional write whose condition did not hold; kv is
   * the key's current version (absent when the key does not exist). */
  get conflict() {
    return this.status === 412;
  }

  /** True for 404. */
  get notFound() {
    return this.status === 404;
  }

  /** True for 410: the revision asked for has been compacted. */
  get compacted() {
    return this.status === 410;
  }

  /** True for 401: the request carried no valid token (none, unknown,
   * expired or revoked). Sign in again (signIn) or send another token. */
  get unauthorized() {
    return this.status === 401;
  }

  /** True for 403: the token may not read or write these keys (or a
   * browser request came from an origin the server does not allow). */
  get forbidden() {
    return this.status === 403;
  }

  /**
   * The error of a failed response, from its problem+json body (or its
   * text, for a body that is not one).
   * @param {Response} resp
   * @returns {Promise<WatchgateError>}
   */
  static async fromResponse(resp) {
    const text = await resp.text().catch(() => "");
    let problem;
    try {
      problem = JSON.parse(text);
      if (typeof problem !== "object" || problem === null) throw new Error("not an object");
    } catch {
      problem = { title: resp.statusText || "HTTP " + resp.status, detail: text.trim() };
    }
    if (!problem.status) problem.status = resp.status;
    return new WatchgateError(problem, { headers: resp.headers });
  }
}

function headerInt(headers, name) {
  const v = headers && headers.get(name);
  return v ? Number(v) : undefined;
}

/** Resolves after ms milliseconds, or rejects when signal aborts. */
function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(t);
      reject(signal.reason);
    }, { once: true });
  });
}

/** Jittered exponential backoff: attempt 1 waits about min, each further
 * attempt doubles it up to max; the wait is drawn uniformly from
 * [delay/2, delay] so clients that lost the same server do not return in
 * the same instant. */
function backoff(attempt, min, max) {
  const d = Math.min(max, min * 2 ** Math.max(0, attempt - 1));
  return d / 2 + Math.random() * (d / 2);
}

/**
 * @typedef {Object} WatchgateOptions
 * @property {string} [baseURL] the server's URL (default: the page's
 *   origin)
 * @property {string} [token] sent as Authorization: Bearer on REST calls
 *   (a browser WebSocket cannot send headers: use the session cookie)
 * @property {number} [minBackoff=500] first reconnection delay, ms
 * @property {number} [maxBackoff=15000] longest reconnection delay, ms
 * @property {number} [pingInterval=20000] a ping is sent after this long
 *   without any message from the server; after twice as long the socket is
 *   considered dead and replaced (ms)
 * @property {typeof fetch} [fetch] the fetch function (default: global)
 * @property {typeof WebSocket} [WebSocket] the WebSocket class (default:
 *   global)
 */

/**
 * @typedef {Object} Session
 * Who requests act as: GET /v1/session. Without access control on the
 * server it is the anonymous session, allowed everything
 * ({name: "anonymous", read: [{prefix: ""}], write: [{prefix: ""}]}).
 * @property {string} name the token's name
 * @property {Array<{prefix?: string, prefix_b64?: string}>} read key
 *   prefixes it may read ("" is every key)
 * @property {Array<{prefix?: string, prefix_b64?: string}>} write key
 *   prefixes it may write
 * @property {string} [expires] RFC 3339, when the token expires
 */

/**
 * @typedef {Object} WatchOptions
 * @property {string|Uint8Array} key the key, or the start of the range
 * @property {boolean} [prefix] watch every key that starts with key (the
 *   empty key: every key)
 * @property {string|Uint8Array} [rangeEnd] watch [key, rangeEnd) ("\0":
 *   every key from key on)
 * @property {number} [rev=0] first revision to receive; 0: the next one.
 *   After a read at revision R, watch from R + 1 to miss nothing.
 * @property {boolean} [prevKv] events carry the key's previous version
 * @property {Array<"put"|"delete">} [events] only these event types
 * @property {boolean} [snapshot] send the range's current keys first
 *   (reset, events, synced), then live events; see Snapshot
 */

/**
 * The client: REST calls, and watches multiplexed over one WebSocket.
 *
 * It is an EventTarget; its "state" event (a CustomEvent) reports the
 * socket's state in detail: {state, attempt, delay, resumedFrom, code,
 * reason}. state is "idle" (no watch yet), "connecting", "connected",
 * "reconnecting" (waiting delay ms before attempt), "closed" (after
 * close()), "signedOut" or "expired". On a reconnection, "connected"
 * carries resumedFrom: the smallest revision from which a watch resumed
 * (null when no watch had a position yet). "progress" events carry
 * {revision} from the server's progress messages; "error" events carry
 * server errors that name no watch.
 *
 * Access control: a browser WebSocket cannot send an Authorization header,
 * so the socket authenticates with the session cookie that signIn() sets.
 * Without a valid session the client does not retry for ever: when the
 * server refuses the handshake and GET /v1/session answers 401, state
 * becomes "signedOut"; when the server closes the socket with 1008 (the
 * token expired, or was revoked), "expired". In both the watches stay, in
 * state "pending", and nothing is retried until signIn() (or connect())
 * opens the socket again; they then resume where they were. signOut()
 * also leads to "signedOut". A "session" event carries the session after
 * signIn() (detail: the session) and signOut() (detail: null).
 */
export class Watchgate extends EventTarget {
  /** @param {WatchgateOptions} [options] */
  constructor(options = {}) {
    super();
    const base = options.baseURL ?? (typeof location !== "undefined" ? location.origin : "");
    /** @type {string} */
    this.baseURL = base.replace(/\/+$/, "");
    this.token = options.token;
    this.minBackoff = options.minBackoff ?? 500;
    this.maxBackoff = options.maxBackoff ?? 15000;
    this.pingInterval = options.pingInterval ?? 20000;
    this._fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;

    /** @type {"idle"|"connecting"|"connected"|"reconnecting"|"closed"|"signedOut"|"expired"} */
    this.state = "idle";
    /** Details of the last state change (the "state" event's detail). */
    this.stateDetail = { state: "idle" };
    /** @type {Map<string, Watch>} live watches by id */
    this._watches = new Map();
    this._nextId = 1;
    this._ws = null;
    this._attempt = 0;
    this._everConnected = false;
    this._timer = null;
    this._heartbeat = null;
    this._lastMessage = 0;
    // When the browser says the network is back, try at once rather than
    // at the end of the backoff.
    this._online = () => {
      if (this.state === "reconnecting" && !this._ws) {
        this._attempt = 0;
        this._connect();
      }
    };
    if (typeof window !== "undefined" && window.addEventListener) window.addEventListener("online", this._online);
  }

  // ---- session ----

  /**
   * Signs in with a token: POST /v1/session with it as a bearer token. The
   * server checks it and sets the session cookie (HttpOnly, so no script
   * can read it; SameSite=Strict), which every later request of this page
   * to the same origin carries, the WebSocket and EventSource included.
   * The socket then reconnects at once to carry the cookie, and its
   * watches resume. A bad token throws a WatchgateError with status 401
   * (unauthorized). The token itself is not kept.
   * @param {string} token
   * @param {{signal?: AbortSignal}} [opts]
   * @returns {Promise<Session>}
   */
  async signIn(token, opts = {}) {
    if (typeof token !== "string" || token.trim() === "") {
      throw new WatchgateError({ type: "urn:watchgate:problem:unauthorized", title: "Unauthorized", status: 401, detail: "enter a token" });
    }
    const resp = await this._request("POST", "/v1/session", {
      headers: { Authorization: "Bearer " + token.trim() }, signal: opts.signal, bearer: false,
    });
    const session = await resp.json();
    this.dispatchEvent(new CustomEvent("session", { detail: session }));
    this._restart();
    return session;
  }

  /**
   * Signs out: DELETE /v1/session expires the session cookie. The socket is
   * closed and state becomes "signedOut"; the watches stay pending until
   * the next signIn().
   * @param {{signal?: AbortSignal}} [opts]
   * @returns {Promise<void>}
   */
  async signOut(opts = {}) {
    await this._request("DELETE", "/v1/session", { signal: opts.signal, bearer: false });
    this._stop("signedOut", 1000, "signed out");
    this.dispatchEvent(new CustomEvent("session", { detail: null }));
  }

  /**
   * Who the requests act as: GET /v1/session. Without a valid session (or
   * token option) on a server with access control it throws a
   * WatchgateError with status 401 (unauthorized).
   * @param {{signal?: AbortSignal}} [opts]
   * @returns {Promise<Session>}
   */
  async session(opts = {}) {
    return this._json("GET", "/v1/session", { signal: opts.signal });
  }

  /** Closes the socket for want of a valid session: the watches wait,
   * nothing is retried until _restart. */
  _stop(state, code, reason) {
    clearTimeout(this._timer);
    clearInterval(this._heartbeat);
    if (this._ws) {
      const ws = this._ws;
      this._ws = null;
      ws.close(1000, reason);
    }
    for (const w of this._watches.values()) w._disconnected();
    if (this.state !== "closed" && this.state !== "idle") this._setState({ state, code, reason });
  }

  /** Opens the socket again now (after a sign-in): a socket opened before
   * it does not carry the new cookie. */
  _restart() {
    if (this.state === "idle" || this.state === "closed") return;
    clearTimeout(this._timer);
    clearInterval(this._heartbeat);
    if (this._ws) {
      const ws = this._ws;
      this._ws = null;
      ws.close(1000, "new session");
    }
    for (const w of this._watches.values()) w._disconnected();
    this._attempt = 0;
    this._connect();
  }

  // ---- REST ----

  /** The URL of path with query parameters (undefined and false left out). */
  _url(path, query) {
    return this.baseURL + path + queryString(query);
  }

  /**
   * Sends one request and returns its response; a status that is not 2xx
   * (or 304) throws a WatchgateError, as does a network failure (status 0).
   * @returns {Promise<Response>}
   */
  async _request(method, path, { query, headers = {}, body, signal, bearer = true } = {}) {
    const h = new Headers(headers);
    if (bearer && this.token) h.set("Authorization", "Bearer " + this.token);
    let resp;
    try {
      resp = await this._fetch(this._url(path, query), { method, headers: h, body, signal, cache: "no-store", credentials: "same-origin" });
    } catch (err) {
      if (err && err.name === "AbortError") throw err;
      throw new WatchgateError({ title: "Network error", status: 0, detail: String(err && err.message || err) }, { cause: err });
    }
    if (!resp.ok && resp.status !== 304) throw await WatchgateError.fromResponse(resp);
    return resp;
  }

  async _json(method, path, opts) {
    const resp = await this._request(method, path, opts);
    return resp.json();
  }

  /**
   * Reads one key: {revision, kv, etag}. A missing key throws a
   * WatchgateError with status 404 (notFound).
   * @param {string|Uint8Array} key
   * @param {{rev?: number, signal?: AbortSignal}} [opts] rev reads as of
   *   that revision (410 when compacted)
   * @returns {Promise<{revision: number, kv: KeyValue, etag: string}>}
   */
  async get(key, opts = {}) {
    if (isDotKey(key)) {
      const r = await this._dotTxn([], [{ get: this._keyOp(key) }], [], opts.signal);
      const kvs = r.responses[0].get.kvs;
      if (!kvs.length) throw new WatchgateError({ type: "urn:watchgate:problem:key-not-found", title: "Key not found", status: 404, detail: "no such key" });
      return { revision: r.revision, kv: kvs[0], etag: `"${kvs[0].mod_revision}"` };
    }
    const resp = await this._request("GET", "/v1/kv/" + pathKey(key), {
      query: { format: "json", rev: opts.rev || undefined }, signal: opts.signal,
    });
    const out = await resp.json();
    out.etag = resp.headers.get("ETag");
    return out;
  }

  /**
   * Reads one page of a range: {revision, kvs, count, more, continue}.
   * Pass the continue token of a page to get the next one, at the same
   * revision as the first.
   * @param {string|Uint8Array} key start of the range
   * @param {{prefix?: boolean, rangeEnd?: string|Uint8Array, limit?: number,
   *   keysOnly?: boolean, countOnly?: boolean, rev?: number,
   *   continue?: string, signal?: AbortSignal}} [opts] without prefix or
   *   rangeEnd, prefix is assumed
   */
  async range(key, opts = {}) {
    const query = {
      limit: opts.limit, keys_only: opts.keysOnly, count_only: opts.countOnly,
      rev: opts.rev || undefined, continue: opts.continue,
    };
    if (opts.rangeEnd !== undefined) query.range_end = opts.rangeEnd;
    else query.prefix = opts.prefix ?? true;
    return this._json("GET", "/v1/kv/" + pathKey(key), { query, signal: opts.signal });
  }

  /**
   * Reads a whole range, following continue tokens: every page is read at
   * the revision of the first, so the result is one consistent view.
   * @param {string|Uint8Array} key
   * @param {Object} [opts] as for range; limit is the page size
   * @returns {Promise<{revision: number, kvs: KeyValue[]}>}
   */
  async rangeAll(key, opts = {}) {
    const kvs = [];
    let page = await this.range(key, opts);
    kvs.push(...(page.kvs || []));
    while (page.more && page.continue) {
      page = await this.range(key, { ...opts, continue: page.continue, rev: undefined });
      kvs.push(...(page.kvs || []));
    }
    return { revision: page.revision, kvs };
  }

  /**
   * Writes a key: {revision, kv, prev_kv?, created}. With ifMatch, only if
   * the key's mod_revision is still that ("*": only if it exists); with
   * ifNoneMatch "*", only if it does not exist. A condition that does not
   * hold throws a WatchgateError with status 412 (conflict) whose kv is the
   * key's current version.
   * @param {string|Uint8Array} key
   * @param {string|Uint8Array|ArrayBuffer|Blob} value
   * @param {{ifMatch?: number|string, ifNoneMatch?: "*", prevKv?: boolean,
   *   signal?: AbortSignal}} [opts]
   */
  async put(key, value, opts = {}) {
    if (isDotKey(key)) return this._dotPut(key, value, opts);
    const headers = { "Content-Type": "application/octet-stream" };
    if (opts.ifMatch !== undefined) headers["If-Match"] = etag(opts.ifMatch);
    if (opts.ifNoneMatch !== undefined) headers["If-None-Match"] = etag(opts.ifNoneMatch);
    const body = typeof value === "string" || (typeof Blob !== "undefined" && value instanceof Blob) ? value : toBytes(value);
    const resp = await this._request("PUT", "/v1/kv/" + pathKey(key), {
      query: { prev_kv: opts.prevKv }, headers, body, signal: opts.signal,
    });
    const out = await resp.json();
    out.created = resp.status === 201;
    return out;
  }

  /**
   * Deletes a key, or a range with prefix / rangeEnd: {revision, deleted,
   * prev_kvs?}. A single missing key throws a WatchgateError with status
   * 404; ifMatch as for put.
   * @param {string|Uint8Array} key
   * @param {{prefix?: boolean, rangeEnd?: string|Uint8Array, ifMatch?: number|string,
   *   prevKv?: boolean, signal?: AbortSignal}} [opts]
   */
  async delete(key, opts = {}) {
    if (isDotKey(key) && !opts.prefix && opts.rangeEnd === undefined) return this._dotDelete(key, opts);
    const headers = {};
    if (opts.ifMatch !== undefined) headers["If-Match"] = etag(opts.ifMatch);
    return this._json("DELETE", "/v1/kv/" + pathKey(key), {
      query: { prefix: opts.prefix, range_end: opts.rangeEnd, prev_kv: opts.prevKv }, headers, signal: opts.signal,
    });
  }

  /**
   * Runs a transaction: {revision, succeeded, responses}. The request is
   * the API's JSON ({compare, success, failure}); wherever it has a key,
   * range_end or value member, a Uint8Array there is sent as its _b64 form.
   * @param {{compare?: Object[], success?: Object[], failure?: Object[]}} txn
   * @param {{signal?: AbortSignal}} [opts]
   */
  async txn(txn, opts = {}) {
    return this._json("POST", "/v1/txn", {
      headers: { "Content-Type": "application/json" }, body: JSON.stringify(encodeBytesMembers(txn)), signal: opts.signal,
    });
  }

  /**
   * The store's status: {revision, compact_revision, keys, db_size_bytes,
   * watchers: {synced, unsynced, victim}, connections: {sse, ws}, version}.
   * @param {{signal?: AbortSignal}} [opts]
   */
  async status(opts = {}) {
    return this._json("GET", "/v1/status", { signal: opts.signal });
  }

  /**
   * Drops the history older than revision. 400 when revision is in the
   * future, 409 when the store is already compacted past it.
   * @param {number} revision
   * @param {{signal?: AbortSignal}} [opts]
   */
  async compact(revision, opts = {}) {
    return this._json("POST", "/v1/compact", {
      headers: { "Content-Type": "application/json" }, body: JSON.stringify({ revision }), signal: opts.signal,
    });
  }

  _keyOp(key) {
    const o = {};
    setBytesField(o, "key", typeof key === "string" ? key : toBytes(key));
    return o;
  }

  /** Runs a transaction for a "." or ".." key, which no URL can name. */
  _dotTxn(compare, success, failure, signal) {
    return this.txn({ compare, success, failure }, { signal });
  }

  _dotCompare(key, opts) {
    const k = this._keyOp(key);
    if (opts.ifMatch === "*" || opts.ifMatch === '"*"') return [{ ...k, target: "version", op: ">", value: 0 }];
    if (opts.ifMatch !== undefined) return [{ ...k, target: "mod", op: "=", value: Number(String(opts.ifMatch).replace(/"/g, "")) }];
    if (opts.ifNoneMatch !== undefined) return [{ ...k, target: "version", op: "=", value: 0 }];
    return [];
  }

  _dotConflict(r) {
    const kvs = r.responses[0].get.kvs;
    return new WatchgateError({
      type: "urn:watchgate:problem:precondition-failed", title: "Precondition failed", status: 412,
      detail: "the key changed", revision: r.revision, kv: kvs[0],
    });
  }

  async _dotPut(key, value, opts) {
    const op = { ...this._keyOp(key) };
    setBytesField(op, "value", typeof value === "string" ? value : toBytes(value));
    // The get runs before the put in the same transaction: it sees the
    // state the put replaces.
    const r = await this._dotTxn(this._dotCompare(key, opts), [{ get: this._keyOp(key) }, { put: { ...op, prev_kv: !!opts.prevKv } }], [{ get: this._keyOp(key) }], opts.signal);
    if (!r.succeeded) throw this._dotConflict(r);
    const put = r.responses[1].put;
    const out = { revision: r.revision, kv: put.kv, created: r.responses[0].get.kvs.length === 0 };
    if (put.prev_kv) out.prev_kv = put.prev_kv;
    return out;
  }

  async _dotDelete(key, opts) {
    const cmp = this._dotCompare(key, opts);
    const r = await this._dotTxn(cmp, [{ delete: { ...this._keyOp(key), prev_kv: !!opts.prevKv } }], [{ get: this._keyOp(key) }], opts.signal);
    if (!r.succeeded) throw this._dotConflict(r);
    const d = r.responses[0].delete;
    if (!d.deleted) throw new WatchgateError({ type: "urn:watchgate:problem:key-not-found", title: "Key not found", status: 404, detail: "no such key" });
    return { revision: r.revision, ...d };
  }

  // ---- watches over the WebSocket ----

  /**
   * Starts a watch on the shared socket (opening it if needed). The watch
   * survives reconnections: it resumes from the last revision it completed
   * + 1. With snapshot true, prefer snapshot(), which keeps the replica.
   * @param {WatchOptions} options
   * @param {WatchHandlers} [handlers] listeners added before it starts
   * @returns {Watch}
   */
  watch(options, handlers) {
    return this._add(new Watch(this, "w" + this._nextId++, options), handlers);
  }

  /**
   * Starts a snapshot watch: a live replica of a range (Snapshot.map),
   * rebuilt whenever the server sends a reset.
   * @param {WatchOptions} options snapshot is implied
   * @param {WatchHandlers} [handlers]
   * @returns {Snapshot}
   */
  snapshot(options, handlers) {
    return this._add(new Snapshot(this, "s" + this._nextId++, { ...options, snapshot: true }), handlers);
  }

  _add(w, handlers) {
    for (const [type, fn] of Object.entries(handlers || {})) {
      w.addEventListener(type, (e) => fn(e.detail, e));
    }
    this._watches.set(w.id, w);
    if (this.state === "connected") this._send(w._watchMessage());
    else if (this.state === "idle" || this.state === "closed") {
      if (this.state === "closed" && typeof window !== "undefined" && window.addEventListener) window.addEventListener("online", this._online);
      this._connect();
    }
    return w;
  }

  /** Opens the socket now rather than at the first watch; after
   * "signedOut" or "expired", tries again (as after another sign-in in
   * another tab). */
  connect() {
    if (this.state === "idle") this._connect();
    else if (this.state === "signedOut" || this.state === "expired") {
      this._attempt = 0;
      this._connect();
    }
  }

  /**
   * Closes the socket and ends every watch (each gets an "end" event).
   * The client can still make REST calls.
   */
  close() {
    this._setState({ state: "closed" });
    if (typeof window !== "undefined" && window.removeEventListener) window.removeEventListener("online", this._online);
    clearTimeout(this._timer);
    clearInterval(this._heartbeat);
    if (this._ws) {
      const ws = this._ws;
      this._ws = null;
      ws.close(1000, "closed by the client");
    }
    for (const w of [...this._watches.values()]) w._end("client closed");
  }

  /** Asks the server for a progress message (see the "progress" event). */
  requestProgress() {
    this._send({ op: "progress" });
  }

  _setState(detail) {
    this.state = detail.state;
    this.stateDetail = detail;
    this.dispatchEvent(new CustomEvent("state", { detail }));
  }

  _wsURL() {
    const base = this.baseURL || (typeof location !== "undefined" ? location.origin : "");
    return base.replace(/^http/, "ws") + "/v1/ws";
  }

  _connect() {
    clearTimeout(this._timer);
    this._setState({ state: this._everConnected ? "reconnecting" : "connecting", attempt: this._attempt });
    let ws;
    try {
      ws = new this._WebSocket(this._wsURL(), "watchgate.v1");
    } catch (err) {
      this._scheduleReconnect(1006, String(err));
      return;
    }
    this._ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      if (ws === this._ws) this._opened();
    };
    ws.onmessage = (e) => ws === this._ws && this._message(e.data);
    ws.onclose = (e) => ws === this._ws && this._closed(e.code, e.reason, opened);
    // An error is always followed by close, which handles it.
    ws.onerror = () => {};
  }

  _opened() {
    const resumed = this._everConnected;
    this._everConnected = true;
    this._attempt = 0;
    this._lastMessage = Date.now();
    let from = null;
    for (const w of this._watches.values()) {
      const m = w._watchMessage();
      if (resumed && w._hasPosition() && (from === null || m.rev < from)) from = m.rev;
      this._send(m);
    }
    clearInterval(this._heartbeat);
    this._heartbeat = setInterval(() => this._checkAlive(), Math.max(250, this.pingInterval / 2));
    this._setState({ state: "connected", resumed, resumedFrom: from });
  }

  /** Pings an idle socket and replaces one that stays silent: a peer that
   * vanished without closing (a dropped network) sends no close frame. */
  _checkAlive() {
    if (!this._ws || this.state !== "connected") return;
    const idle = Date.now() - this._lastMessage;
    if (idle >= 2 * this.pingInterval) {
      const ws = this._ws;
      this._closed(1006, "no message from the server for " + Math.round(idle / 1000) + "s");
      ws.close();
    } else if (idle >= this.pingInterval) {
      this._send({ op: "ping" });
    }
  }

  _closed(code, reason, opened = true) {
    this._ws = null;
    clearInterval(this._heartbeat);
    if (this.state === "closed") return;
    for (const w of this._watches.values()) w._disconnected();
    if (code === 1008) {
      // The server ended the session (the token expired or was revoked):
      // retrying with the same cookie cannot succeed.
      this._setState({ state: "expired", code, reason: reason || "access expired" });
      return;
    }
    if (!opened) {
      // A refused handshake shows only as 1006; ask the server whether it
      // was for want of a session before retrying.
      const ws = this._ws;
      sessionRefused(this._fetch, this.baseURL).then((refused) => {
        if (this._ws !== ws || this.state === "closed" || this.state === "signedOut" || this.state === "expired") return;
        if (refused) this._setState({ state: "signedOut", code: 401, reason: "not signed in" });
        else this._scheduleReconnect(code, reason);
      });
      return;
    }
    this._scheduleReconnect(code, reason);
  }

  _scheduleReconnect(code, reason) {
    this._attempt++;
    const delay = backoff(this._attempt, this.minBackoff, this.maxBackoff);
    this._setState({ state: "reconnecting", attempt: this._attempt, delay, code, reason });
    this._timer = setTimeout(() => this._connect(), delay);
  }

  _send(msg) {
    if (this._ws && this._ws.readyState === 1) this._ws.send(JSON.stringify(msg));
  }

  _message(data) {
    this._lastMessage = Date.now();
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      this.dispatchEvent(new CustomEvent("error", { detail: new WatchgateError({ title: "Bad message", detail: "the server sent a message that is not JSON" }) }));
      return;
    }
    if (msg.type === "pong") return;
    if (msg.type === "progress") {
      for (const w of this._watches.values()) w._progress(msg.revision);
      this.dispatchEvent(new CustomEvent("progress", { detail: msg }));
      return;
    }
    const w = msg.id !== undefined ? this._watches.get(msg.id) : undefined;
    if (w) {
      w._message(msg);
    } else if (msg.type === "error" && msg.id === undefined) {
      this.dispatchEvent(new CustomEvent("error", { detail: new WatchgateError(msg.error || {}) }));
    }
    // Messages for a watch already canceled here are dropped.
  }

  _remove(w) {
    if (this._watches.get(w.id) === w) this._watches.delete(w.id);
  }
}

/** Resolves true when the server answers GET /v1/session with 401 to a
 * request that carries only the page's cookies: it has access control and
 * there is no valid session. Any other answer, or none, resolves false. */
async function sessionRefused(fetchFn, baseURL) {
  try {
    const base = baseURL ?? (typeof location !== "undefined" ? location.origin : "");
    const resp = await fetchFn(base.replace(/\/+$/, "") + "/v1/session", { cache: "no-store", credentials: "same-origin" });
    resp.body?.cancel?.();
    return resp.status === 401;
  } catch {
    return false;
  }
}

/** A query string ("" when empty) of params; undefined, null and false are
 * left out, a Uint8Array is percent-encoded byte by byte, anything else as
 * the UTF-8 of its string form. */
function queryString(params) {
  const parts = [];
  for (const [k, v] of Object.entries(params || {})) {
    if (v === undefined || v === null || v === false) continue;
    parts.push(k + "=" + (typeof v === "string" || typeof v === "number" || typeof v === "boolean" ? encodeURIComponent(String(v)) : pathKey(v)));
  }
  return parts.length ? "?" + parts.join("&") : "";
}

function etag(v) {
  const s = String(v);
  return s === "*" || s.startsWith('"') || s.startsWith("W/") ? s : `"${s}"`;
}

/** A copy of a transaction request where Uint8Array key, range_end and
 * value members become key_b64, range_end_b64 and value_b64. */
function encodeBytesMembers(v) {
  if (Array.isArray(v)) return v.map(encodeBytesMembers);
  if (v === null || typeof v !== "object") return v;
  const out = {};
  for (const [k, x] of Object.entries(v)) {
    if ((k === "key" || k === "range_end" || k === "value") && (x instanceof Uint8Array || x instanceof ArrayBuffer)) {
      out[k + "_b64"] = toBase64(toBytes(x));
    } else {
      out[k] = encodeBytesMembers(x);
    }
  }
  return out;
}

/**
 * @typedef {Object<string, function(Object, CustomEvent): void>} WatchHandlers
 * Listeners by event type ("events", "created", "reset", "synced",
 * "compacted", "canceled", "error", "end", "change" for a Snapshot); each
 * gets the event's detail.
 */

/**
 * One watch on the client's socket. An EventTarget; every event is a
 * CustomEvent whose detail is the server's message:
 * - "created" {revision}: the server registered it (again, after each
 *   reconnection);
 * - "events" {revision, events, snapshot}: events in revision order; a
 *   revision is never split across two messages; snapshot is true for the
 *   puts of a snapshot (between reset and synced);
 * - "reset" {revision}, "synced" {revision}: a snapshot starts / is
 *   complete;
 * - "compacted" {compact_revision, revision}: the revision the watch
 *   needed is gone; the watch has ended (re-read the range and watch from
 *   its revision + 1, or use a snapshot);
 * - "canceled" {reason}, "error" (a WatchgateError): the watch has ended;
 * - "end" {reason}: after any of those, and after cancel().
 */
export class Watch extends EventTarget {
  /** @param {Watchgate} client @param {string} id @param {WatchOptions} options */
  constructor(client, id, options) {
    super();
    if (options.key === undefined) throw new TypeError("watchgate: a watch needs a key (\"\" with prefix: every key)");
    this._client = client;
    /** @type {string} the watch's id on the socket */
    this.id = id;
    /** @type {WatchOptions} */
    this.options = { ...options };
    /**
     * @type {number} the last revision this watch has completed: every
     * matching event up to it has been delivered. 0 until known.
     */
    this.revision = 0;
    /** @type {"pending"|"active"|"ended"} */
    this.state = "pending";
    /** True between reset and synced. */
    this.inSnapshot = false;
  }

  /** Stops the watch. */
  cancel() {
    if (this.state === "ended") return;
    this._client._send({ op: "cancel", id: this.id });
    this._end("canceled by the client");
  }

  _hasPosition() {
    return this.revision > 0;
  }

  /** The watch message that (re)starts it: from the revision after the
   * last one completed, or as first asked. */
  _watchMessage() {
    const o = this.options;
    const m = { op: "watch", id: this.id };
    setBytesField(m, "key", o.key);
    if (o.prefix) m.prefix = true;
    if (o.rangeEnd !== undefined) setBytesField(m, "range_end", o.rangeEnd);
    m.rev = this._hasPosition() ? this.revision + 1 : (o.rev || 0);
    if (o.prevKv) m.prev_kv = true;
    if (o.events) m.events = o.events;
    if (o.snapshot) m.snapshot = true;
    return m;
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _message(msg) {
    switch (msg.type) {
      case "created":
        this.state = "active";
        // A watch from "now" has seen everything up to its registration,
        // one from revision R everything before R; a snapshot watch has a
        // position only once synced.
        if (!this._hasPosition() && !this.options.snapshot) {
          this.revision = this.options.rev ? this.options.rev - 1 : msg.revision;
        }
        this._emit("created", msg);
        break;
      case "events":
        if (this.inSnapshot) {
          this._emit("events", { ...msg, snapshot: true });
        } else {
          this.revision = Math.max(this.revision, msg.revision);
          this._emit("events", { ...msg, snapshot: false });
        }
        break;
      case "reset":
        this.inSnapshot = true;
        this._emit("reset", msg);
        break;
      case "synced":
        this.inSnapshot = false;
        this.revision = msg.revision;
        this._emit("synced", msg);
        break;
      case "compacted":
        this._emit("compacted", msg);
        this._end("compacted");
        break;
      case "canceled":
        this._emit("canceled", msg);
        this._end(msg.reason || "canceled by the server");
        break;
      case "error": {
        const err = new WatchgateError(msg.error || {});
        this._emit("error", err);
        if (err.status >= 500) {
          // The server could not serve it: try again from where it was.
          this.state = "pending";
          setTimeout(() => {
            if (this.state === "pending" && this._client.state === "connected") this._client._send(this._watchMessage());
          }, backoff(1, this._client.minBackoff, this._client.maxBackoff));
        } else {
          this._end(err.detail || err.title);
        }
        break;
      }
    }
  }

  _progress(rev) {
    if (this.state === "active" && !this.inSnapshot && this._hasPosition() && rev > this.revision) {
      this.revision = rev;
    }
  }

  _disconnected() {
    this.state = "pending";
    // A snapshot cut short is dropped; it starts again (or the watch
    // resumes from the last synced revision).
    this.inSnapshot = false;
  }

  _end(reason) {
    if (this.state === "ended") return;
    this.state = "ended";
    this._client._remove(this);
    this._emit("end", { reason });
  }
}

/**
 * A snapshot watch: map is a live replica of the range, keyed by keyId,
 * valid as of revision once synced is true. The replica is rebuilt on every
 * reset (at the start, and when the revision the watch needed after a
 * reconnection was compacted): the new one replaces the old at synced, so
 * map never shows a half-built snapshot. Besides the events of Watch, it
 * dispatches "change" {revision, events, reset} after map changed (reset
 * true when the whole replica was replaced).
 */
export class Snapshot extends Watch {
  constructor(client, id, options) {
    super(client, id, options);
    /** @type {Map<string, KeyValue>} */
    this.map = new Map();
    /** True once the first snapshot is complete. */
    this.synced = false;
    this._staging = null;
  }

  /** The replica's kvs sorted by key. @returns {KeyValue[]} */
  sorted() {
    return [...this.map.values()].sort((a, b) => compareKeys(keyBytes(a), keyBytes(b)));
  }

  _message(msg) {
    switch (msg.type) {
      case "reset":
        this._staging = new Map();
        break;
      case "events":
        if (this.inSnapshot && this._staging) {
          for (const ev of msg.events) this._staging.set(keyId(ev.kv), ev.kv);
        }
        break;
    }
    super._message(msg);
    switch (msg.type) {
      case "synced":
        this.map = this._staging || new Map();
        this._staging = null;
        this.synced = true;
        this._emit("change", { revision: msg.revision, events: [], reset: true });
        break;
      case "events":
        if (!this.inSnapshot && this.synced) {
          for (const ev of msg.events) {
            if (ev.type === "delete") this.map.delete(keyId(ev.kv));
            else this.map.set(keyId(ev.kv), ev.kv);
          }
          this._emit("change", { revision: msg.revision, events: msg.events, reset: false });
        }
        break;
    }
  }

  _disconnected() {
    super._disconnected();
    this._staging = null;
  }
}

/**
 * @typedef {Object} EventStreamOptions
 * @property {string} [baseURL] the server's URL (default: the page's origin)
 * @property {boolean} [prefix]
 * @property {string|Uint8Array} [rangeEnd]
 * @property {boolean} [prevKv]
 * @property {"put"|"delete"} [events] only this event type
 * @property {string} [progress] bookmark interval, as "15s"; "0" disables
 * @property {boolean} [snapshot] keep a replica in map (reset, puts, synced)
 * @property {number} [rev] start at this revision (history first)
 * @property {string} [lastEventId] resume after this event id (an id
 *   saved from an earlier stream); wins over rev
 * @property {boolean} [withCredentials]
 * @property {number} [minBackoff=1000] @property {number} [maxBackoff=15000]
 *   delays before a new EventSource when the browser gave up on one
 */

/**
 * One watch over Server-Sent Events (GET /v1/watch/{key}): the simple case,
 * with the browser's EventSource. The browser reconnects by itself and
 * resumes with Last-Event-ID; when it gives up (an HTTP error, as while a
 * server shuts down) a new EventSource resumes from lastEventId after a
 * jittered backoff. An EventTarget dispatching CustomEvents:
 * - "put", "delete" {id, kv}: kv as in the API (prev_kv inside it with
 *   prevKv);
 * - "progress" {revision}; "reset" {revision}; "synced" {revision};
 * - "compacted" {compact_revision, revision}: the stream has ended;
 * - "error" (a WatchgateError for an error event of the server: the
 *   stream has ended);
 * - "state" {state: "connecting"|"open"|"reconnecting"|"closed"|"signedOut"}:
 *   "signedOut" when the server refused the stream and GET /v1/session
 *   answers 401 (access control, and no valid session cookie); the stream
 *   is then closed for good: sign in (Watchgate.signIn) and open a new one.
 * The key cannot be "." or ".." (a browser resolves such URL path
 * segments); watch those over the WebSocket.
 */
export class EventStream extends EventTarget {
  /**
   * @param {string} key the key or the start of the range
   * @param {EventStreamOptions} [options]
   */
  constructor(key, options = {}) {
    super();
    this.key = key;
    this.options = options;
    /** @type {string} the id of the last event received: the resume point */
    this.lastEventId = options.lastEventId || "";
    /** @type {Map<string, KeyValue>} the replica, with snapshot */
    this.map = new Map();
    this.synced = false;
    this.state = "connecting";
    this._staging = null;
    this._attempt = 0;
    this._timer = null;
    this._open();
  }

  /** The stream's URL, resuming from lastEventId when there is one. */
  url() {
    const o = this.options;
    const base = (o.baseURL ?? (typeof location !== "undefined" ? location.origin : "")).replace(/\/+$/, "");
    return base + "/v1/watch/" + pathKey(this.key) + queryString({
      prefix: o.prefix, range_end: o.rangeEnd, prev_kv: o.prevKv, events: o.events,
      progress: o.progress, snapshot: o.snapshot,
      last_event_id: this.lastEventId || undefined,
      rev: this.lastEventId ? undefined : o.rev || undefined,
    });
  }

  /** Closes the stream for good. */
  close() {
    clearTimeout(this._timer);
    if (this.source) this.source.close();
    this._setState("closed");
  }

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state } }));
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _open() {
    const es = new EventSource(this.url(), { withCredentials: !!this.options.withCredentials });
    this.source = es;
    const on = (type, fn) => es.addEventListener(type, (e) => {
      if (this.source !== es) return;
      if (e.lastEventId) this.lastEventId = e.lastEventId;
      fn(e.data ? JSON.parse(e.data) : {}, e);
    });
    es.onopen = () => {
      this._attempt = 0;
      this._setState("open");
    };
    es.onerror = (e) => {
      if (this.source !== es || this.state === "closed") return;
      if (e.data !== undefined) {
        // An error event of the server (a problem document): the stream
        // has ended.
        es.close();
        let p;
        try { p = JSON.parse(e.data); } catch { p = { title: "Stream error", detail: e.data }; }
        this._emit("error", new WatchgateError(p));
        this._setState("closed");
        return;
      }
      // A snapshot cut short is dropped; the browser resumes from the last
      // id, before the reset.
      this._staging = null;
      if (es.readyState === EventSource.CLOSED) {
        this._attempt++;
        this._setState("reconnecting");
        const f = globalThis.fetch.bind(globalThis);
        sessionRefused(f, this.options.baseURL).then((refused) => {
          if (this.source !== es || this.state === "closed") return;
          if (refused) {
            this._setState("signedOut");
            return;
          }
          this._timer = setTimeout(() => this._open(), backoff(this._attempt, this.options.minBackoff ?? 1000, this.options.maxBackoff ?? 15000));
        });
      } else {
        this._setState("reconnecting");
      }
    };
    for (const type of ["put", "delete"]) {
      on(type, (kv, e) => {
        if (this._staging) {
          this._staging.set(keyId(kv), kv);
          return;
        }
        if (this.options.snapshot && this.synced) {
          if (type === "delete") this.map.delete(keyId(kv));
          else this.map.set(keyId(kv), kv);
        }
        this._emit(type, { id: e.lastEventId, kv });
      });
    }
    on("progress", (d) => this._emit("progress", d));
    on("reset", (d) => {
      this._staging = new Map();
      this._emit("reset", d);
    });
    on("synced", (d) => {
      if (this._staging) this.map = this._staging;
      this._staging = null;
      this.synced = true;
      this._emit("synced", d);
    });
    on("compacted", (d) => {
      es.close();
      this._emit("compacted", d);
      this._setState("closed");
    });
  }
}
