package httpapi

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/watchgate/watchgate/access"
)

// testToken is a token of a test access file and what it may do.
type testToken struct {
	name, token  string
	read, write  []string
	readB64      []string
	expires      string
	omitFromFile bool
}

// testPolicy builds an access policy from tokens, as an access file would
// list them.
func testPolicy(tb testing.TB, tokens ...testToken) *access.Policy {
	tb.Helper()
	var b strings.Builder
	b.WriteString("tokens:\n")
	list := func(name string, v []string) {
		if v == nil {
			return
		}
		b.WriteString("    " + name + ": [")
		for i, p := range v {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString("'" + p + "'")
		}
		b.WriteString("]\n")
	}
	for _, t := range tokens {
		if t.omitFromFile {
			continue
		}
		b.WriteString("  - name: " + t.name + "\n    sha256: " + access.HashHex(t.token) + "\n")
		list("read", t.read)
		list("write", t.write)
		list("read_b64", t.readB64)
		if t.expires != "" {
			b.WriteString("    expires: " + t.expires + "\n")
		}
	}
	p, err := access.Parse([]byte(b.String()))
	if err != nil {
		tb.Fatalf("access file:\n%s\n%v", b.String(), err)
	}
	return p
}

func bearer(token string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + token}
}

var (
	tokAdmin  = testToken{name: "admin", token: "wg_admin", read: []string{""}, write: []string{""}}
	tokNS1    = testToken{name: "ns1", token: "wg_ns1", read: []string{"ns1/"}, write: []string{"ns1/"}}
	tokReader = testToken{name: "reader", token: "wg_reader", read: []string{"a", "b"}, readB64: []string{base64.StdEncoding.EncodeToString([]byte("x\xff"))}}
	tokOld    = testToken{name: "old", token: "wg_old", read: []string{""}, expires: "2001-01-01T00:00:00Z"}
)

// TestAccessREST checks every REST route with and without tokens: 401
// without a valid one (with WWW-Authenticate), 403 outside its prefixes,
// the public routes open to all.
func TestAccessREST(t *testing.T) {
	s := newTestServer(t, Options{Access: testPolicy(t, tokAdmin, tokNS1, tokReader, tokOld), OpenAPI: mustReadFile(t, specPath)}, kvOptionsForTest())
	for _, k := range []string{"ns1/a", "ns10", "a1", "b1", "c1", "x%FF1"} {
		mustStatus(t, s.do(t, req{method: http.MethodPut, path: "/v1/kv/" + k, body: "v", header: bearer(tokAdmin.token)}), http.StatusCreated)
	}
	rev := itoa(s.revision())
	for _, tc := range []struct {
		name   string
		r      req
		status int
		slug   string
	}{
		// Public routes.
		{"healthz", req{path: "/healthz"}, 200, ""},
		{"readyz", req{path: "/readyz"}, 200, ""},
		{"openapi", req{path: "/openapi.yaml"}, 200, ""},
		{"dashboard", req{path: "/"}, 200, ""},
		{"client", req{path: "/watchgate.js"}, 200, ""},
		// No token, a bad one, an expired one, a malformed header.
		{"no token", req{path: "/v1/kv/ns1/a"}, 401, "unauthorized"},
		{"unknown token", req{path: "/v1/kv/ns1/a", header: bearer("wg_nope")}, 401, "unauthorized"},
		{"expired token", req{path: "/v1/kv/ns1/a", header: bearer(tokOld.token)}, 401, "unauthorized"},
		{"basic auth", req{path: "/v1/kv/ns1/a", header: map[string]string{"Authorization": "Basic YTpi"}}, 401, "unauthorized"},
		{"empty bearer", req{path: "/v1/kv/ns1/a", header: map[string]string{"Authorization": "Bearer "}}, 401, "unauthorized"},
		{"no token put", req{method: http.MethodPut, path: "/v1/kv/ns1/a", body: "x"}, 401, "unauthorized"},
		{"no token status", req{path: "/v1/status"}, 401, "unauthorized"},
		{"no token metrics", req{path: "/metrics"}, 401, "unauthorized"},
		{"no token snapshot", req{path: "/v1/snapshot"}, 401, "unauthorized"},
		{"no token watch", req{path: "/v1/watch/ns1/a"}, 401, "unauthorized"},
		{"no token session", req{path: "/v1/session"}, 401, "unauthorized"},
		{"query token off", req{path: "/v1/kv/ns1/a?access_token=wg_ns1"}, 401, "unauthorized"},
		// Inside and outside the prefixes.
		{"read own key", req{path: "/v1/kv/ns1/a", header: bearer(tokNS1.token)}, 200, ""},
		{"read own missing key", req{path: "/v1/kv/ns1/zz", header: bearer(tokNS1.token)}, 404, "key-not-found"},
		{"near prefix ns10", req{path: "/v1/kv/ns10", header: bearer(tokNS1.token)}, 403, "forbidden"},
		{"own prefix range", req{path: "/v1/kv/ns1/?prefix=true", header: bearer(tokNS1.token)}, 200, ""},
		{"wider prefix range", req{path: "/v1/kv/ns1?prefix=true", header: bearer(tokNS1.token)}, 403, "forbidden"},
		{"everything", req{path: "/v1/kv/?prefix=true", header: bearer(tokNS1.token)}, 403, "forbidden"},
		{"range to the end", req{path: "/v1/kv/ns1/?range_end=%00", header: bearer(tokNS1.token)}, 403, "forbidden"},
		{"empty range end is one key", req{path: "/v1/kv/ns1/a?range_end=", header: bearer(tokNS1.token)}, 200, ""},
		{"adjacent prefixes a and b", req{path: "/v1/kv/a?range_end=c", header: bearer(tokReader.token)}, 200, ""},
		{"past adjacent prefixes", req{path: "/v1/kv/a?range_end=c1", header: bearer(tokReader.token)}, 403, "forbidden"},
		{"prefix ending in 0xff", req{path: "/v1/kv/x%FF?prefix=true", header: bearer(tokReader.token)}, 200, ""},
		{"key under 0xff prefix", req{path: "/v1/kv/x%FF1", header: bearer(tokReader.token)}, 200, ""},
		{"range crossing 0xff", req{path: "/v1/kv/x%FF?range_end=y%01", header: bearer(tokReader.token)}, 403, "forbidden"},
		{"read-only token writes", req{method: http.MethodPut, path: "/v1/kv/a1", body: "x", header: bearer(tokReader.token)}, 403, "forbidden"},
		{"write own key", req{method: http.MethodPut, path: "/v1/kv/ns1/b", body: "x", header: bearer(tokNS1.token)}, 201, ""},
		{"write near prefix", req{method: http.MethodPut, path: "/v1/kv/ns10", body: "x", header: bearer(tokNS1.token)}, 403, "forbidden"},
		{"delete own prefix", req{method: http.MethodDelete, path: "/v1/kv/ns1/b?prefix=true", header: bearer(tokNS1.token)}, 200, ""},
		{"delete wider prefix", req{method: http.MethodDelete, path: "/v1/kv/ns1?prefix=true", header: bearer(tokNS1.token)}, 403, "forbidden"},
		{"compact needs every key", req{method: http.MethodPost, path: "/v1/compact", body: `{"revision":2}`, header: bearer(tokNS1.token)}, 403, "forbidden"},
		{"snapshot needs every key", req{path: "/v1/snapshot", header: bearer(tokReader.token)}, 403, "forbidden"},
		{"status with any token", req{path: "/v1/status", header: bearer(tokReader.token)}, 200, ""},
		{"metrics with any token", req{path: "/metrics", header: bearer(tokReader.token)}, 200, ""},
		{"session", req{path: "/v1/session", header: bearer(tokReader.token)}, 200, ""},
		{"watch outside", req{path: "/v1/watch/ns10", header: bearer(tokNS1.token)}, 403, "forbidden"},
		{"watch wider prefix", req{path: "/v1/watch/ns1?prefix=true", header: bearer(tokNS1.token)}, 403, "forbidden"},
		{"watch everything", req{path: "/v1/watch/?prefix=true", header: bearer(tokNS1.token)}, 403, "forbidden"},
		{"admin compacts", req{method: http.MethodPost, path: "/v1/compact", body: `{"revision":` + rev + `}`, header: bearer(tokAdmin.token)}, 200, ""},
		// Malformed beats forbidden: the request is parsed first.
		{"bad parameter", req{path: "/v1/kv/ns10?prefix=maybe", header: bearer(tokNS1.token)}, 400, "bad-request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := s.do(t, tc.r)
			if tc.slug == "" {
				mustStatus(t, resp, tc.status)
				return
			}
			p := mustProblem(t, resp, tc.status, tc.slug)
			if tc.status == 401 && resp.header.Get("WWW-Authenticate") != `Bearer realm="watchgate"` {
				t.Errorf("401 with WWW-Authenticate %q", resp.header.Get("WWW-Authenticate"))
			}
			if tc.status == 403 && !strings.Contains(p.Detail, "may not") {
				t.Errorf("403 detail %q does not say what is not allowed", p.Detail)
			}
		})
	}
}

// TestAccessTxn checks that every compare and every operation of both
// branches of a transaction is authorized.
func TestAccessTxn(t *testing.T) {
	s := newTestServer(t, Options{Access: testPolicy(t, tokNS1, tokReader)}, kvOptionsForTest())
	for _, tc := range []struct {
		name, body string
		status     int
		where      string
	}{
		{"all inside", `{"compare":[{"key":"ns1/a","target":"version","op":"=","value":0}],"success":[{"put":{"key":"ns1/a","value":"1"}}],"failure":[{"get":{"key":"ns1/","prefix":true}}]}`, 200, ""},
		{"compare outside", `{"compare":[{"key":"ns10","target":"version","op":"=","value":0}],"success":[{"put":{"key":"ns1/a","value":"1"}}]}`, 403, "compare[0]"},
		{"put outside", `{"success":[{"put":{"key":"ns1/b","value":"1"}},{"put":{"key":"ns2/b","value":"1"}}]}`, 403, "success[1]"},
		{"delete range outside", `{"success":[{"delete":{"key":"ns1","prefix":true}}]}`, 403, "success[0]"},
		{"get outside in the failure branch", `{"failure":[{"get":{"key":"ns1/","range_end":"ns2"}}]}`, 403, "failure[0]"},
		{"get everything", `{"success":[{"get":{"key":"","prefix":true}}]}`, 403, "success[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := s.do(t, req{method: http.MethodPost, path: "/v1/txn", body: tc.body, header: bearer(tokNS1.token)})
			if tc.status == 200 {
				mustStatus(t, resp, 200)
				return
			}
			p := mustProblem(t, resp, tc.status, "forbidden")
			if !strings.HasPrefix(p.Detail, tc.where+":") {
				t.Errorf("detail %q does not start with %s", p.Detail, tc.where)
			}
		})
	}
	// A reader's transaction of gets only is allowed, a put is not.
	mustStatus(t, s.do(t, req{method: http.MethodPost, path: "/v1/txn", body: `{"success":[{"get":{"key":"a","range_end":"c"}}]}`, header: bearer(tokReader.token)}), 200)
	mustProblem(t, s.do(t, req{method: http.MethodPost, path: "/v1/txn", body: `{"success":[{"put":{"key":"a","value":"x"}}]}`, header: bearer(tokReader.token)}), 403, "forbidden")
}

// TestAccessSessionCookie signs a browser in, uses the cookie, refuses
// cross-site writes made with it, and signs out.
func TestAccessSessionCookie(t *testing.T) {
	s := newTestServer(t, Options{Access: testPolicy(t, tokNS1), CORSOrigins: []string{"https://app.example"}}, kvOptionsForTest())
	mustProblem(t, s.do(t, req{method: http.MethodPost, path: "/v1/session"}), 401, "unauthorized")
	mustProblem(t, s.do(t, req{method: http.MethodPost, path: "/v1/session", header: bearer("wg_nope")}), 401, "unauthorized")
	resp := s.do(t, req{method: http.MethodPost, path: "/v1/session", header: bearer(tokNS1.token)})
	mustStatus(t, resp, 200)
	if string(resp.body) != `{"name":"ns1","read":[{"prefix":"ns1/"}],"write":[{"prefix":"ns1/"}]}`+"\n" {
		t.Errorf("session %s", resp.body)
	}
	hr := &http.Response{Header: resp.header}
	cookies := hr.Cookies()
	if len(cookies) != 1 {
		t.Fatalf("cookies %v", resp.header.Values("Set-Cookie"))
	}
	c := cookies[0]
	if c.Name != TokenCookie || c.Value != tokNS1.token || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Secure {
		t.Errorf("cookie %+v: want HttpOnly, SameSite=Strict, Path=/, not Secure on cleartext", c)
	}
	cookie := TokenCookie + "=" + c.Value
	withCookie := func(extra ...string) map[string]string {
		h := map[string]string{"Cookie": cookie}
		for i := 0; i+1 < len(extra); i += 2 {
			h[extra[i]] = extra[i+1]
		}
		return h
	}
	mustStatus(t, s.do(t, req{method: http.MethodPut, path: "/v1/kv/ns1/c", body: "1", header: withCookie()}), 201)
	mustStatus(t, s.do(t, req{path: "/v1/kv/ns1/c", header: withCookie()}), 200)
	mustProblem(t, s.do(t, req{path: "/v1/kv/ns2", header: withCookie()}), 403, "forbidden")
	// A page of another site posts with the cookie: refused. A page of a
	// trusted origin, or the same origin, is not.
	mustProblem(t, s.do(t, req{method: http.MethodPut, path: "/v1/kv/ns1/c", body: "2",
		header: withCookie("Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example")}), 403, "cross-origin")
	mustProblem(t, s.do(t, req{method: http.MethodDelete, path: "/v1/kv/ns1/c",
		header: withCookie("Origin", "https://evil.example")}), 403, "cross-origin")
	mustStatus(t, s.do(t, req{method: http.MethodPut, path: "/v1/kv/ns1/c", body: "3",
		header: withCookie("Sec-Fetch-Site", "cross-site", "Origin", "https://app.example")}), 200)
	mustStatus(t, s.do(t, req{method: http.MethodPut, path: "/v1/kv/ns1/c", body: "4",
		header: withCookie("Sec-Fetch-Site", "same-origin")}), 200)
	// A read from another site is not a forgery (and SameSite keeps the
	// cookie from being sent anyway).
	mustStatus(t, s.do(t, req{path: "/v1/kv/ns1/c", header: withCookie("Sec-Fetch-Site", "cross-site")}), 200)
	// A bearer token cannot be attached by another site's page.
	mustStatus(t, s.do(t, req{method: http.MethodPut, path: "/v1/kv/ns1/c", body: "5",
		header: map[string]string{"Authorization": "Bearer " + tokNS1.token, "Sec-Fetch-Site": "cross-site"}}), 200)
	// Signing in from another site is refused too.
	mustProblem(t, s.do(t, req{method: http.MethodPost, path: "/v1/session",
		header: map[string]string{"Authorization": "Bearer " + tokNS1.token, "Sec-Fetch-Site": "cross-site"}}), 403, "cross-origin")

	resp = s.do(t, req{method: http.MethodDelete, path: "/v1/session", header: withCookie()})
	mustStatus(t, resp, http.StatusNoContent)
	gone := (&http.Response{Header: resp.header}).Cookies()
	if len(gone) != 1 || gone[0].Name != TokenCookie || gone[0].MaxAge >= 0 {
		t.Errorf("sign out cookies %v", resp.header.Values("Set-Cookie"))
	}

	// Over TLS, or with SecureCookies behind a proxy, the cookie is Secure.
	sec := newTestServer(t, Options{Access: testPolicy(t, tokNS1), SecureCookies: true}, kvOptionsForTest())
	resp = sec.do(t, req{method: http.MethodPost, path: "/v1/session", header: bearer(tokNS1.token)})
	if c := (&http.Response{Header: resp.header}).Cookies(); len(c) != 1 || !c[0].Secure {
		t.Errorf("SecureCookies: %v", resp.header.Values("Set-Cookie"))
	}

	// Without access control there is nothing to sign in to.
	anon := newTestServer(t, Options{}, kvOptionsForTest())
	resp = anon.do(t, req{method: http.MethodPost, path: "/v1/session"})
	mustStatus(t, resp, 200)
	if string(resp.body) != `{"name":"anonymous","read":[{"prefix":""}],"write":[{"prefix":""}]}`+"\n" || resp.header.Get("Set-Cookie") != "" {
		t.Errorf("anonymous session %s, cookie %q", resp.body, resp.header.Get("Set-Cookie"))
	}
	// An anonymous server still refuses cross-site writes: a page of any
	// site could otherwise write to a server on the user's machine.
	mustProblem(t, anon.do(t, req{method: http.MethodPost, path: "/v1/txn", body: `{}`,
		header: map[string]string{"Sec-Fetch-Site": "cross-site"}}), 403, "cross-origin")
}

// TestAccessQueryToken checks that a token in the query is taken only
// with AllowQueryToken, and that the access log never shows it.
func TestAccessQueryToken(t *testing.T) {
	s := newTestServer(t, Options{Access: testPolicy(t, tokNS1), AllowQueryToken: true}, kvOptionsForTest())
	mustStatus(t, s.do(t, req{method: http.MethodPut, path: "/v1/kv/ns1/q?access_token=" + tokNS1.token, body: "v"}), 201)
	mustStatus(t, s.do(t, req{path: "/v1/kv/ns1/q?access_token=" + tokNS1.token + "&format=json"}), 200)
	mustStatus(t, s.do(t, req{path: "/v1/kv/ns1/q?%61ccess_token=" + tokNS1.token}), 200)
	w := s.openWatch(t, s.Client(), "/v1/watch/ns1/q?access_token="+tokNS1.token, nil)
	w.close()
	mustProblem(t, s.do(t, req{path: "/v1/kv/ns1/q?access_token=wg_wrong"}), 401, "unauthorized")
	logs := s.logs.String()
	if strings.Contains(logs, tokNS1.token) || strings.Contains(logs, "wg_wrong") {
		t.Errorf("the log shows a query token:\n%s", logs)
	}
	if !strings.Contains(logs, `"query":"access_token=REDACTED&format=json"`) || !strings.Contains(logs, `"principal":"ns1"`) {
		t.Errorf("the log lacks the redacted query or the principal:\n%s", logs)
	}
}

// TestAccessWatches checks watches over SSE and WebSocket: the whole range
// must be readable, a refused WebSocket watch gets an error for its id and
// the socket goes on, and a reload of the policy keeps open streams and
// watches but refuses new ones of a revoked token.
func TestAccessWatches(t *testing.T) {
	s := newTestServer(t, Options{Access: testPolicy(t, tokAdmin, tokNS1)}, kvOptionsForTest())
	sse := s.openWatch(t, s.Client(), "/v1/watch/ns1/?prefix=true", bearer(tokNS1.token))

	// No token: the handshake is refused before the upgrade.
	ctx := t.Context()
	wsURL := "ws" + strings.TrimPrefix(s.URL, "http") + "/v1/ws"
	_, resp, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{Subprotocols: []string{"watchgate.v1"}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("handshake without a token: %v, %v", err, resp)
	}
	sock := s.dialWS(t, http.Header{"Authorization": {"Bearer " + tokNS1.token}})
	sock.send(t, `{"op":"watch","id":"mine","key":"ns1/","prefix":true}`)
	sock.expect(t, "created", "mine")
	for _, tc := range []struct{ id, msg string }{
		{"near", `{"op":"watch","id":"near","key":"ns10"}`},
		{"wide", `{"op":"watch","id":"wide","key":"ns1","prefix":true}`},
		{"all", `{"op":"watch","id":"all","key":"","prefix":true}`},
		{"to-end", `{"op":"watch","id":"to-end","key":"ns1/","range_end":"\u0000"}`},
	} {
		sock.send(t, tc.msg)
		m := sock.expect(t, "error", tc.id)
		if m.Error == nil || m.Error.Status != 403 || m.Error.Type != ProblemTypePrefix+"forbidden" {
			t.Errorf("watch %s: %s, want a 403 forbidden error", tc.id, m.raw)
		}
	}

	// Reload without ns1: what is open goes on; new requests and new
	// watches of ns1 are refused.
	s.api.SetAccess(testPolicy(t, tokAdmin))
	s.put(t, "ns1/x", "after-reload")
	if ev := sse.next(t); ev.Type != "put" || ev.ID != itoa(s.revision()) {
		t.Errorf("SSE after reload: %+v", ev)
	}
	if m := sock.expect(t, "events", "mine"); len(m.Events) != 1 || *m.Events[0].KV.Key != "ns1/x" {
		t.Errorf("ws after reload: %s", m.raw)
	}
	sock.send(t, `{"op":"watch","id":"again","key":"ns1/a"}`)
	if m := sock.expect(t, "error", "again"); m.Error == nil || m.Error.Status != 401 {
		t.Errorf("new watch of a revoked token: %s, want 401", m.raw)
	}
	mustProblem(t, s.do(t, req{path: "/v1/watch/ns1/a", header: bearer(tokNS1.token)}), 401, "unauthorized")
}

// TestAccessExpiryClosesSockets checks that a socket whose token expires is
// closed with 1008 (policy violation).
func TestAccessExpiryClosesSockets(t *testing.T) {
	soon := time.Now().Add(1500 * time.Millisecond).UTC().Format(time.RFC3339Nano)
	tok := testToken{name: "brief", token: "wg_brief", read: []string{""}, expires: soon}
	s := newTestServer(t, Options{Access: testPolicy(t, tok)}, kvOptionsForTest())
	sock := s.dialWS(t, http.Header{"Authorization": {"Bearer " + tok.token}})
	ctx := t.Context()
	for {
		_, _, err := sock.c.Read(ctx)
		if err != nil {
			if code := websocket.CloseStatus(err); code != websocket.StatusPolicyViolation {
				t.Errorf("socket ended with %v, want 1008", err)
			}
			return
		}
	}
}
