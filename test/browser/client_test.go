package browser

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// clientRESTJS exercises the REST side of watchgate.js against the server
// and returns what it saw, normalised so that the expected result does
// not depend on revision numbers.
const clientRESTJS = `(async () => {
  const m = await import("/watchgate.js");
  const wg = new m.Watchgate();
  const out = {};
  const catchErr = async (f, pick) => { try { await f(); return "no error"; } catch (e) { return pick(e); } };

  const p1 = await wg.put("lib/a", "one");
  const p2 = await wg.put("lib/a", "two", { ifMatch: p1.kv.mod_revision });
  out.put = { created: p1.created, updatedCreated: p2.created, version: p2.kv.version, next: p2.kv.mod_revision === p1.kv.mod_revision + 1 };
  out.conflict = await catchErr(() => wg.put("lib/a", "three", { ifMatch: p1.kv.mod_revision }), (e) => ({
    name: e.name, isError: e instanceof Error, isWatchgate: e instanceof m.WatchgateError, status: e.status,
    type: e.type, title: e.title, hasDetail: e.detail.length > 0, conflict: e.conflict,
    kvValue: e.kv.value, kvIsCurrent: e.kv.mod_revision === p2.kv.mod_revision,
    headerRevision: e.headerRevision === p2.kv.mod_revision,
  }));
  out.ifNoneMatch = await catchErr(() => wg.put("lib/a", "x", { ifNoneMatch: "*" }), (e) => e.status);
  out.ifMatchAny = (await wg.put("lib/a", "two", { ifMatch: "*" })).kv.version;
  const g = await wg.get("lib/a");
  out.get = { value: g.kv.value, etag: g.etag === '"' + g.kv.mod_revision + '"', revision: g.revision >= g.kv.mod_revision };
  out.notFound = await catchErr(() => wg.get("lib/missing"), (e) => ({ status: e.status, notFound: e.notFound, type: e.type }));

  // A key and a value that are not UTF-8 go as bytes and come back in
  // key_b64 / value_b64.
  const bk = new Uint8Array([0x6c, 0x69, 0x62, 0x2f, 0xff, 0x00]);
  await wg.put(bk, new Uint8Array([0, 1, 2, 255]));
  const gb = await wg.get(bk);
  out.binary = {
    key_b64: gb.kv.key_b64, value_b64: gb.kv.value_b64, keyText: m.keyText(gb.kv), valueText: m.valueText(gb.kv),
    keyBytes: [...m.keyBytes(gb.kv)], valueBytes: [...m.valueBytes(gb.kv)],
    id: m.keyId(gb.kv) === "\uDBFF" + gb.kv.key_b64, fromId: [...m.keyFromId(m.keyId(gb.kv))],
  };

  // Keys a URL path would mangle: dot segments, percent signs, slashes,
  // spaces and non-ASCII text.
  out.awkward = {};
  for (const k of ["lib/x/../y", "lib/./z", "lib/%2F%", "lib/ü ñ?#", "lib//double", ".", ".."]) {
    const w = await wg.put(k, "v:" + k);
    const r = await wg.get(k);
    out.awkward[k] = { created: w.created, key: r.kv.key, value: r.kv.value };
  }
  out.dotConflict = await catchErr(() => wg.put("..", "again", { ifMatch: 1 }), (e) => ({ status: e.status, value: e.kv.value }));
  out.dotDelete = (await wg.delete(".")).deleted;

  for (let i = 0; i < 25; i++) await wg.put("lib/page/" + String(i).padStart(2, "0"), "p" + i);
  const page = await wg.range("lib/page/", { limit: 10 });
  out.page = { n: page.kvs.length, more: page.more, token: typeof page.continue, first: page.kvs[0].key };
  const all = await wg.rangeAll("lib/page/", { limit: 10 });
  out.all = { n: all.kvs.length, sorted: all.kvs.every((kv, i) => i === 0 || m.compareKeys(all.kvs[i - 1].key, kv.key) < 0), last: all.kvs[24].key };
  out.keysOnly = (await wg.range("lib/page/", { keysOnly: true, limit: 1 })).kvs[0];
  out.count = (await wg.range("lib/page/", { countOnly: true })).count;
  out.rangeEnd = (await wg.range("lib/page/05", { rangeEnd: "lib/page/08" })).kvs.map((kv) => kv.key);

  out.deleteConflict = await catchErr(() => wg.delete("lib/a", { ifMatch: 1 }), (e) => e.status);
  out.deletePrefix = (await wg.delete("lib/page/", { prefix: true })).deleted;
  out.deleteMissing = await catchErr(() => wg.delete("lib/missing"), (e) => e.status);

  const t = await wg.txn({
    compare: [{ key: "lib/a", target: "value", op: "=", value: "two" }],
    success: [{ put: { key: "lib/t", value: new Uint8Array([255]) } }, { get: { key: "lib/t" } }],
    failure: [],
  });
  out.txn = { succeeded: t.succeeded, stored: t.responses[1].get.kvs[0].value_b64 };

  const st = await wg.status();
  out.status = { revision: st.revision === t.revision, watchers: typeof st.watchers.synced, connections: typeof st.connections.ws };
  out.compactFuture = await catchErr(() => wg.compact(st.revision + 100), (e) => ({ status: e.status, revision: e.revision === st.revision }));
  await wg.compact(p2.kv.mod_revision);
  out.compactPast = await catchErr(() => wg.compact(p1.kv.mod_revision), (e) => ({ status: e.status, compact: e.compact_revision === p2.kv.mod_revision }));
  out.readCompacted = await catchErr(() => wg.get("lib/a", { rev: p1.kv.mod_revision }), (e) => ({ status: e.status, compacted: e.compacted }));

  const down = new m.Watchgate({ baseURL: "http://127.0.0.1:9" });
  out.network = await catchErr(() => down.status(), (e) => ({ status: e.status, title: e.title, isWatchgate: e instanceof m.WatchgateError }));
  return out;
})()`

// TestClientREST runs the REST wrappers of watchgate.js in the browser:
// results, conditional writes, errors as objects with the problem+json
// members, bytes as key_b64/value_b64, awkward keys, paging, transactions,
// status and compaction.
func TestClientREST(t *testing.T) {
	s := startServer(t)
	b := newBrowser(t)
	p := b.newPage("client", s.base+"/healthz")
	var got any
	p.eval(t, clientRESTJS, &got)
	var want any
	if err := json.Unmarshal([]byte(`{
	  "put": {"created": true, "updatedCreated": false, "version": 2, "next": true},
	  "conflict": {"name": "WatchgateError", "isError": true, "isWatchgate": true, "status": 412,
	    "type": "urn:watchgate:problem:precondition-failed", "title": "Precondition failed", "hasDetail": true,
	    "conflict": true, "kvValue": "two", "kvIsCurrent": true, "headerRevision": true},
	  "ifNoneMatch": 412,
	  "ifMatchAny": 3,
	  "get": {"value": "two", "etag": true, "revision": true},
	  "notFound": {"status": 404, "notFound": true, "type": "urn:watchgate:problem:key-not-found"},
	  "binary": {"key_b64": "bGliL/8A", "value_b64": "AAEC/w==", "keyText": null, "valueText": null,
	    "keyBytes": [108, 105, 98, 47, 255, 0], "valueBytes": [0, 1, 2, 255], "id": true, "fromId": [108, 105, 98, 47, 255, 0]},
	  "awkward": {
	    "lib/x/../y": {"created": true, "key": "lib/x/../y", "value": "v:lib/x/../y"},
	    "lib/./z": {"created": true, "key": "lib/./z", "value": "v:lib/./z"},
	    "lib/%2F%": {"created": true, "key": "lib/%2F%", "value": "v:lib/%2F%"},
	    "lib/ü ñ?#": {"created": true, "key": "lib/ü ñ?#", "value": "v:lib/ü ñ?#"},
	    "lib//double": {"created": true, "key": "lib//double", "value": "v:lib//double"},
	    ".": {"created": true, "key": ".", "value": "v:."},
	    "..": {"created": true, "key": "..", "value": "v:.."}
	  },
	  "dotConflict": {"status": 412, "value": "v:.."},
	  "dotDelete": 1,
	  "page": {"n": 10, "more": true, "token": "string", "first": "lib/page/00"},
	  "all": {"n": 25, "sorted": true, "last": "lib/page/24"},
	  "keysOnly": {"key": "lib/page/00", "create_revision": 0, "mod_revision": 0, "version": 1},
	  "count": 25,
	  "rangeEnd": ["lib/page/05", "lib/page/06", "lib/page/07"],
	  "deleteConflict": 412,
	  "deletePrefix": 25,
	  "deleteMissing": 404,
	  "txn": {"succeeded": true, "stored": "/w=="},
	  "status": {"revision": true, "watchers": "number", "connections": "number"},
	  "compactFuture": {"status": 400, "revision": true},
	  "compactPast": {"status": 409, "compact": true},
	  "readCompacted": {"status": 410, "compacted": true},
	  "network": {"status": 0, "title": "Network error", "isWatchgate": true}
	}`), &want); err != nil {
		t.Fatal(err)
	}
	// keys_only revisions depend on the run: compare the members present.
	if m, ok := got.(map[string]any); ok {
		if ko, ok := m["keysOnly"].(map[string]any); ok {
			for _, k := range []string{"create_revision", "mod_revision"} {
				if v, ok := ko[k].(float64); ok && v > 0 {
					ko[k] = float64(0)
				}
			}
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("watchgate.js REST results (-want +got)\n%s", diff)
	}
}

// clientWatchJS exercises the watches of watchgate.js and its EventStream
// around a compaction: a watch that needs compacted history is told so and
// ends; a snapshot heals with a reset and a full replica; options reach
// the server; EventStream reports compaction, keeps a snapshot replica and
// resumes from a saved id.
const clientWatchJS = `(async () => {
  const m = await import("/watchgate.js");
  const wg = new m.Watchgate({ minBackoff: 100, maxBackoff: 1000 });
  const out = {};
  const once = (target, type) => new Promise((r) => target.addEventListener(type, (e) => r(e.detail), { once: true }));
  const within = (p, what) => Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error("timed out: " + what)), 10000))]);

  const revs = [];
  for (let i = 1; i <= 5; i++) revs.push((await wg.put("w/" + i, "v" + i)).revision);
  await wg.delete("w/5");
  await wg.compact(revs[3]);

  const old = wg.watch({ key: "w/", prefix: true, rev: revs[0] });
  const [compacted, end] = await within(Promise.all([once(old, "compacted"), once(old, "end")]), "compacted watch");
  out.compacted = { compact: compacted.compact_revision === revs[3], reason: end.reason, state: old.state };

  const snap = wg.snapshot({ key: "w/", prefix: true, rev: revs[0] });
  let resets = 0;
  snap.addEventListener("reset", () => resets++);
  await within(once(snap, "synced"), "snapshot synced");
  out.healed = { resets, synced: snap.synced, keys: snap.sorted().map((kv) => kv.key + "=" + kv.value) };
  const changed = once(snap, "change");
  await wg.put("w/6", "v6");
  const ch = await within(changed, "snapshot change");
  out.snapshotLive = { reset: ch.reset, keys: [...snap.map.keys()].sort() };

  const dels = wg.watch({ key: "w/", prefix: true, events: ["delete"], prevKv: true });
  await within(once(dels, "created"), "created");
  const gotDel = once(dels, "events");
  await wg.put("w/1", "v1b");
  await wg.delete("w/1");
  const d = await within(gotDel, "delete event");
  out.filtered = d.events.map((ev) => ({ type: ev.type, key: ev.kv.key, prev: ev.prev_kv && ev.prev_kv.value }));
  dels.cancel();
  out.canceled = dels.state;

  // EventStream: compaction in-band, then closed.
  const esOld = new m.EventStream("w/", { prefix: true, rev: revs[0] });
  const esc = await within(once(esOld, "compacted"), "EventStream compacted");
  out.esCompacted = { compact: esc.compact_revision === revs[3], state: esOld.state, id: esOld.lastEventId };

  const esSnap = new m.EventStream("w/", { prefix: true, snapshot: true });
  await within(once(esSnap, "synced"), "EventStream synced");
  out.esSnapshot = [...esSnap.map.keys()].sort();
  const live = once(esSnap, "put");
  const w7 = await wg.put("w/7", "v7");
  const p7 = await within(live, "EventStream put");
  out.esLive = { key: p7.kv.key, id: p7.id === String(w7.revision), map: esSnap.map.has("w/7") };
  esSnap.close();

  // Resume from a saved id: only what came after it.
  await wg.put("w/8", "v8");
  const w9 = await wg.put("w/9", "v9");
  const resumed = new m.EventStream("w/", { prefix: true, lastEventId: String(w7.revision) });
  const keys = [];
  await within(new Promise((r) => resumed.addEventListener("put", (e) => { keys.push(e.detail.kv.key); if (keys.length === 2) r(); })), "resumed EventStream");
  out.esResumed = { keys, lastEventId: resumed.lastEventId === String(w9.revision) };
  resumed.close();

  wg.close();
  out.closed = { state: wg.state, snapshot: snap.state };
  return out;
})()`

// TestClientWatches runs the watches of watchgate.js in the browser around
// a compaction, over the WebSocket and over Server-Sent Events.
func TestClientWatches(t *testing.T) {
	s := startServer(t)
	b := newBrowser(t)
	p := b.newPage("client", s.base+"/healthz")
	var got any
	p.eval(t, clientWatchJS, &got)
	var want any
	if err := json.Unmarshal([]byte(`{
	  "compacted": {"compact": true, "reason": "compacted", "state": "ended"},
	  "healed": {"resets": 1, "synced": true, "keys": ["w/1=v1", "w/2=v2", "w/3=v3", "w/4=v4"]},
	  "snapshotLive": {"reset": false, "keys": ["w/1", "w/2", "w/3", "w/4", "w/6"]},
	  "filtered": [{"type": "delete", "key": "w/1", "prev": "v1b"}],
	  "canceled": "ended",
	  "esCompacted": {"compact": true, "state": "closed", "id": "compacted"},
	  "esSnapshot": ["w/2", "w/3", "w/4", "w/6"],
	  "esLive": {"key": "w/7", "id": true, "map": true},
	  "esResumed": {"keys": ["w/8", "w/9"], "lastEventId": true},
	  "closed": {"state": "closed", "snapshot": "ended"}
	}`), &want); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("watchgate.js watch results (-want +got)\n%s", diff)
	}
}
