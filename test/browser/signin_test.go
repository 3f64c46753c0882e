package browser

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/go-cmp/cmp"
	"github.com/watchgate/watchgate/access"
)

// accessToken is one token of a test's access file.
type accessToken struct {
	name, token  string
	read, write  []string
	expiresAfter time.Duration // 0: never
}

// writeAccessFile writes the access file of tokens (as JSON, which the
// server reads as YAML) to file.
func writeAccessFile(tb testing.TB, file string, tokens ...accessToken) {
	tb.Helper()
	type entry struct {
		Name    string   `json:"name"`
		SHA256  string   `json:"sha256"`
		Read    []string `json:"read,omitempty"`
		Write   []string `json:"write,omitempty"`
		Expires string   `json:"expires,omitempty"`
	}
	var doc struct {
		Tokens []entry `json:"tokens"`
	}
	for _, t := range tokens {
		e := entry{Name: t.name, SHA256: access.HashHex(t.token), Read: t.read, Write: t.write}
		if t.expiresAfter > 0 {
			e.Expires = time.Now().Add(t.expiresAfter).UTC().Format(time.RFC3339)
		}
		doc.Tokens = append(doc.Tokens, e)
	}
	b, err := json.Marshal(doc)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(file, b, 0o600); err != nil {
		tb.Fatal(err)
	}
}

// bearer is the header of a request with token.
func bearer(token string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + token}
}

// setInput replaces the value of the input id as typing would (an input
// event), for inputs whose value SetValue cannot clear.
func setInput(id, value string) chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](`(() => { const e = document.getElementById(` + jsString(id) + `); e.value = ` + jsString(value) +
		`; e.dispatchEvent(new Event("input", {bubbles: true})); })()`)
}

// signinState describes the sign-in form and the header, for failure
// messages.
const signinState = `{signin: !document.querySelector("#signin").hidden, app: !document.querySelector("#app").hidden,
  msg: document.querySelector("#signin-msg").textContent, kind: document.querySelector("#signin-msg").dataset.kind ?? null,
  who: document.querySelector("#who-name").textContent, conn: document.querySelector("#conn").textContent,
  keys: document.querySelector("#keys-info").textContent}`

// TestDashboardSignIn runs the dashboard against a server with an access
// file: the sign-in form instead of the panels, a clear error for a bad
// token, a live key browser after signing in (the cookie carries the
// WebSocket), a 403 shown as such for a write outside the token's
// prefixes, and signing out back to the form. Then watchgate.js alone:
// errors marked unauthorized and forbidden, and a token that expires
// while its socket is open ending as the state "expired" rather than a
// loop of reconnections.
func TestDashboardSignIn(t *testing.T) {
	rw := accessToken{name: "app-rw", token: access.NewToken(), read: []string{"app/"}, write: []string{"app/"}}
	ro := accessToken{name: "reader", token: access.NewToken(), read: []string{""}}
	file := filepath.Join(t.TempDir(), "access.json")
	writeAccessFile(t, file, rw, ro)
	s := startServerWith(t, "--access-file", file)
	b := newBrowser(t)

	p := b.newPage("dashboard", s.base+"/")
	p.waitFor(t, "sign-in form instead of the panels",
		`!document.querySelector("#signin").hidden && document.querySelector("#app").hidden && document.querySelector("#who").hidden &&
		 document.querySelector("#signin-token").type === "password" && document.querySelector("#conn").dataset.state === "signedOut"`, signinState, waitTimeout)

	p.run(t, setInput("signin-token", "wg_this-is-not-a-token"), chromedp.Click(chromedp.ID("signin-btn")))
	p.waitFor(t, "a bad token is refused clearly",
		`document.querySelector("#signin-msg").dataset.kind === "error" && /Sign-in failed: the token is not valid/.test(document.querySelector("#signin-msg").textContent)`,
		signinState, waitTimeout)
	var panels bool
	p.eval(t, `!document.querySelector("#app").hidden`, &panels)
	if panels {
		t.Fatalf("the panels are shown after a refused sign-in")
	}

	s.putAs(t, rw.token, "app/existing", "1")
	p.run(t, setInput("signin-token", rw.token), chromedp.Click(chromedp.ID("signin-btn")))
	p.waitFor(t, "signed in, connected, browsing the token's prefix",
		`!document.querySelector("#app").hidden && document.querySelector("#signin").hidden &&
		 document.querySelector("#who-name").textContent === "app-rw" && !document.querySelector("#who").hidden &&
		 document.querySelector("#conn").dataset.state === "connected" &&
		 document.querySelector("#prefix").value === "app/" && document.querySelector("#keys-info").dataset.revision &&
		 `+rowJS("app/existing")+` !== null && document.querySelector("#signin-token").value === ""`,
		signinState, waitTimeout)

	r := s.putAs(t, rw.token, "app/color", "blue")
	p.waitFor(t, "a key written through REST appears live",
		rowJS("app/color")+fmt.Sprintf(`?.dataset.value === "blue" && `+rowJS("app/color")+`.dataset.mod === "%d"`, r.KV.ModRevision),
		keyRows, waitTimeout)

	// A write outside app/ from the dashboard: refused, and said so.
	p.run(t, chromedp.Click(chromedp.ID("new-key")), chromedp.WaitVisible(chromedp.ID("edit-key")),
		setInput("edit-key", "other/x"), setInput("edit-value", "nope"), chromedp.Click(chromedp.ID("edit-save")))
	p.waitFor(t, "the 403 shown as such",
		`document.querySelector("#edit-msg").dataset.kind === "forbidden" && document.querySelector("#edit-msg").textContent.includes("403 Forbidden") &&
		 document.querySelector("#edit-msg").textContent.includes("other/x") && document.querySelector("#edit-msg").textContent.includes("“app/”")`,
		`{msg: document.querySelector("#edit-msg").textContent, kind: document.querySelector("#edit-msg").dataset.kind}`, waitTimeout)
	if status, body, err := s.do(t.Context(), http.MethodGet, "other/x", "", bearer(ro.token)); err != nil || status != http.StatusNotFound {
		t.Errorf("GET other/x after the refused write: %d %s %v, want 404", status, body, err)
	}
	// The dashboard goes on: the key browser still follows writes.
	s.putAs(t, rw.token, "app/after", "2")
	p.waitFor(t, "still live after the 403", rowJS("app/after")+` !== null && document.querySelector("#conn").dataset.state === "connected"`, keyRows, waitTimeout)

	p.run(t, chromedp.Click(chromedp.ID("signout")))
	p.waitFor(t, "signed out, back to the form",
		`!document.querySelector("#signin").hidden && document.querySelector("#app").hidden && document.querySelector("#who").hidden &&
		 document.querySelector("#signin-msg").textContent === "Signed out." && document.querySelector("#keys tbody").childElementCount === 0`,
		signinState, waitTimeout)
	var after int
	p.eval(t, `fetch("/v1/session", {cache: "no-store"}).then((r) => r.status)`, &after)
	if after != http.StatusUnauthorized {
		t.Errorf("GET /v1/session after signing out: %d, want 401 (the cookie is gone)", after)
	}
	// Loading the page again shows the form at once.
	p.run(t, chromedp.Reload())
	p.waitFor(t, "the form after a reload", `!document.querySelector("#signin").hidden && document.querySelector("#app").hidden`, signinState, waitTimeout)

	clientSession(t, s, b, p, file, rw, ro)
}

// clientSession checks watchgate.js on its own: session(), signIn(),
// signOut(), errors marked unauthorized and forbidden, and the state
// "expired" for a socket whose token expires, with no reconnection after
// it; and that the dashboard p, signed in with that token, returns to the
// form saying the session expired.
func clientSession(t *testing.T, s *server, b *browser, p *page, file string, rw, ro accessToken) {
	t.Helper()
	// A watch without a session: the handshake is refused (401), the client
	// asks GET /v1/session, says "signedOut" and does not retry.
	p.eval(t, `(async () => {
  const m = await import("/watchgate.js");
  const wg = new m.Watchgate({minBackoff: 100, maxBackoff: 200});
  window.refused = [];
  wg.addEventListener("state", (e) => window.refused.push(e.detail.state + (e.detail.code ? " " + e.detail.code : "")));
  wg.watch({key: "app/", prefix: true});
})()`, nil)
	p.waitFor(t, "signedOut for a refused handshake", `window.refused.includes("signedOut 401")`, `window.refused`, waitTimeout)
	time.Sleep(time.Second)
	var refused []string
	p.eval(t, `window.refused`, &refused)
	if diff := cmp.Diff([]string{"connecting", "signedOut 401"}, refused); diff != "" {
		t.Errorf("states of a watch without a session (-want +got):\n%s", diff)
	}

	var got map[string]any
	p.eval(t, `(async () => {
  const m = await import("/watchgate.js");
  const wg = new m.Watchgate();
  const out = {};
  const fail = async (f) => { try { await f(); return "no error"; } catch (e) { return {status: e.status, unauthorized: e.unauthorized, forbidden: e.forbidden, detail: e.detail}; } };
  const noDetail = (x) => { if (typeof x === "object") delete x.detail; return x; };
  out.before = noDetail(await fail(() => wg.session()));
  out.bad = await fail(() => wg.signIn("wg_bad"));
  const s = await wg.signIn(`+jsString(ro.token)+`);
  out.session = {name: s.name, read: s.read, write: s.write};
  out.again = (await wg.session()).name;
  out.write = await fail(() => wg.put("app/x", "v"));
  await wg.signOut();
  out.after = noDetail(await fail(() => wg.status()));
  return out;
})()`, &got)
	want := map[string]any{
		"before":  map[string]any{"status": 401.0, "unauthorized": true, "forbidden": false},
		"bad":     map[string]any{"status": 401.0, "unauthorized": true, "forbidden": false, "detail": "the token is not valid"},
		"session": map[string]any{"name": "reader", "read": []any{map[string]any{"prefix": ""}}, "write": []any{}},
		"again":   "reader",
		"write":   map[string]any{"status": 403.0, "unauthorized": false, "forbidden": true, "detail": `token "reader" may not write the key "app/x"`},
		"after":   map[string]any{"status": 401.0, "unauthorized": true, "forbidden": false},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("watchgate.js session calls (-want +got):\n%s", diff)
	}

	// A token that expires while its socket is open: the server closes it
	// with 1008, the client says "expired" and stops.
	short := accessToken{name: "short", token: access.NewToken(), read: []string{"app/"}, expiresAfter: 5 * time.Second}
	writeAccessFile(t, file, rw, ro, short)
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(waitTimeout)
	for {
		status, _, err := s.do(t.Context(), http.MethodGet, "app/color", "", bearer(short.token))
		if err == nil && status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the reloaded access file does not take the new token: %d %v", status, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.run(t, setInput("signin-token", short.token), chromedp.Click(chromedp.ID("signin-btn")))
	p.waitFor(t, "dashboard signed in with the short token",
		`document.querySelector("#who-name").textContent === "short" && document.querySelector("#conn").dataset.state === "connected"`, signinState, waitTimeout)
	c := b.newPage("client", s.base+"/healthz")
	c.eval(t, `(async () => {
  const m = await import("/watchgate.js");
  const wg = new m.Watchgate({minBackoff: 100, maxBackoff: 200});
  window.expiry = {states: [], ended: false};
  wg.addEventListener("state", (e) => window.expiry.states.push(e.detail.state + (e.detail.code ? " " + e.detail.code : "")));
  await wg.signIn(`+jsString(short.token)+`);
  const w = wg.watch({key: "app/", prefix: true});
  await new Promise((resolve) => w.addEventListener("created", resolve, {once: true}));
  window.expiry.wg = wg;
})()`, nil)
	c.waitFor(t, "the state expired after the token's end", `window.expiry.states.includes("expired 1008")`, `window.expiry.states`, waitTimeout)
	p.waitFor(t, "the dashboard's form says the session expired",
		`!document.querySelector("#signin").hidden && document.querySelector("#app").hidden && document.querySelector("#conn").dataset.state === "expired" &&
		 document.querySelector("#signin-msg").textContent.startsWith("Your session has expired")`, signinState, waitTimeout)
	// Longer than several backoffs: nothing more happens.
	time.Sleep(time.Second)
	var states []string
	c.eval(t, `window.expiry.states`, &states)
	if i := indexOf(states, "expired 1008"); i != len(states)-1 {
		t.Errorf("states %q: want nothing after expired (no reconnection loop)", states)
	}
}

func indexOf(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}

// putAs writes key = value with token as a bearer token, failing the test
// on any error.
func (s *server) putAs(tb testing.TB, token, key, value string) kvResult {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	status, body, err := s.do(ctx, http.MethodPut, key, value, bearer(token))
	if err != nil || (status != http.StatusOK && status != http.StatusCreated) {
		tb.Fatalf("PUT %s: %d %s %v", key, status, strings.TrimSpace(string(body)), err)
	}
	var r kvResult
	if err := json.Unmarshal(body, &r); err != nil {
		tb.Fatalf("PUT %s: %v in %s", key, err, body)
	}
	return r
}
