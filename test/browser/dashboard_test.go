package browser

import (
	"context"
	"encoding/base64"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

var updateScreenshot = flag.Bool("update-screenshot", false, "save the dashboard's screenshot as docs/dashboard.png")

// waitTimeout bounds every wait for the browser to show something.
const waitTimeout = 15 * time.Second

// openDashboard opens the dashboard at query (for example "?prefix=a/")
// and waits until its socket is connected and the key browser has its
// snapshot.
func openDashboard(t *testing.T, b *browser, s *server, query string) *page {
	t.Helper()
	p := b.newPage("dashboard", s.base+"/"+query)
	p.waitFor(t, "dashboard connected with its key snapshot",
		`document.querySelector("#conn").dataset.state === "connected" && document.querySelector("#keys-info").dataset.revision`,
		`{conn: document.querySelector("#conn").textContent, keys: document.querySelector("#keys-info").textContent}`, waitTimeout)
	return p
}

// rowJS is an expression for the key table's row of key (a text key).
func rowJS(key string) string {
	return `document.querySelector("#keys tr[data-key=" + CSS.escape(` + jsString(key) + `) + "]")`
}

// keyRows describes the key table, for failure messages.
const keyRows = `[...document.querySelectorAll("#keys tbody tr")].map(tr => [tr.dataset.key, tr.dataset.value, tr.dataset.mod])`

// TestDashboardShowsRESTWrites writes through REST and checks that the key
// browser follows: new keys, updates, deletes, a key that is not UTF-8,
// nothing outside its prefix; that the status panel follows the revision;
// and that the page fits a phone's screen.
func TestDashboardShowsRESTWrites(t *testing.T) {
	s := startServer(t)
	b := newBrowser(t)
	s.put(t, "config/log-level", "info")
	p := openDashboard(t, b, s, "?prefix=config/&log=config/")
	p.waitFor(t, "existing key listed", rowJS("config/log-level")+`?.dataset.value === "info"`, keyRows, waitTimeout)
	p.waitFor(t, "event log watching", `document.querySelector("#log-info").dataset.revision`, `document.querySelector("#log-info").textContent`, waitTimeout)

	r := s.put(t, "config/feature-x", "on")
	p.waitFor(t, "new key listed with its revision",
		rowJS("config/feature-x")+fmt.Sprintf(`?.dataset.mod === "%d"`, r.KV.ModRevision), keyRows, waitTimeout)

	r = s.put(t, "config/feature-x", "off")
	p.waitFor(t, "updated key shows its new value",
		rowJS("config/feature-x")+`?.dataset.value === "off" && `+rowJS("config/feature-x")+fmt.Sprintf(`.dataset.mod === "%d"`, r.KV.ModRevision),
		keyRows, waitTimeout)

	// A key outside the prefix never shows; the write after it proves the
	// page has seen past it.
	s.put(t, "other/key", "x")
	s.put(t, "config/limits", `{"rps": 100}`)
	p.waitFor(t, "key after the other prefix listed", rowJS("config/limits"), keyRows, waitTimeout)
	var other bool
	p.eval(t, rowJS("other/key")+` !== null`, &other)
	if other {
		t.Errorf("other/key is listed under the prefix config/")
	}

	// A key that is not UTF-8 comes as key_b64 and is shown as such.
	binKey := "config/\xff\xfe"
	status, body, err := s.do(t.Context(), http.MethodPut, binKey, "bytes", nil)
	if err != nil || status != http.StatusCreated {
		t.Fatalf("PUT binary key: %d %s %v", status, body, err)
	}
	want := "b64:" + base64.StdEncoding.EncodeToString([]byte(binKey))
	p.waitFor(t, "binary key listed in base64",
		`[...document.querySelectorAll("#keys td.key.binary")].some(td => td.textContent === `+jsString(want)+`)`, keyRows, waitTimeout)

	status, body, err = s.do(t.Context(), http.MethodDelete, "config/log-level", "", nil)
	if err != nil || status != http.StatusOK {
		t.Fatalf("DELETE: %d %s %v", status, body, err)
	}
	p.waitFor(t, "deleted key gone", rowJS("config/log-level")+` === null`, keyRows, waitTimeout)

	final := s.put(t, "config/replicas", "3").Revision
	p.waitFor(t, "status panel at the last revision",
		fmt.Sprintf(`document.querySelector("#st-revision").textContent === "%d"`, final),
		`document.querySelector("#st-revision").textContent`, waitTimeout)
	p.waitFor(t, "event log shows the last write",
		fmt.Sprintf(`document.querySelector('#log li.event[data-rev="%d"]')`, final),
		`document.querySelector("#log").textContent`, waitTimeout)
	var logged []string
	p.eval(t, `[...document.querySelectorAll("#log li.event")].reverse().map(li => li.dataset.rev + " " + li.dataset.type + " " + li.dataset.key)`, &logged)
	if len(logged) != 6 {
		t.Errorf("event log: %q, want the 6 writes under config/ since it started", logged)
	}

	if *updateScreenshot {
		p.run(t, chromedp.Click(chromedp.CSS(`#keys tr[data-key="config/limits"]`)),
			chromedp.WaitVisible(chromedp.ID("editor")))
		ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join("..", "..", "docs", "dashboard.png")
		if err := os.WriteFile(file, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", file)
	}

	// On a phone the panels stack and nothing is wider than the screen.
	p.run(t, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)))
	p.waitFor(t, "no horizontal scrolling on a phone",
		`document.documentElement.scrollWidth <= window.innerWidth && document.querySelector("#keys-panel").getBoundingClientRect().width <= window.innerWidth`,
		`{scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth}`, waitTimeout)
	var stacked bool
	p.eval(t, `(() => { const k = document.querySelector("#keys-panel").getBoundingClientRect(), e = document.querySelector("#editor-panel").getBoundingClientRect(); return e.top >= k.bottom; })()`, &stacked)
	if !stacked {
		t.Errorf("on a phone the editor is not below the key list")
	}
}

// editKey opens key in the dashboard's editor and waits until it shows
// value.
func editKey(t *testing.T, p *page, key, value string) {
	t.Helper()
	p.waitFor(t, "row of "+key, rowJS(key), keyRows, waitTimeout)
	p.run(t, chromedp.Click(chromedp.CSS(`#keys tr[data-key="`+key+`"]`)))
	p.waitFor(t, "editor shows "+key,
		`!document.querySelector("#editor").hidden && document.querySelector("#edit-keyname").textContent === `+jsString(key)+
			` && document.querySelector("#edit-value").value === `+jsString(value),
		`{key: document.querySelector("#edit-keyname").textContent, value: document.querySelector("#edit-value").value}`, waitTimeout)
}

// saveValue types value into the editor and saves it.
func saveValue(t *testing.T, p *page, value string) {
	t.Helper()
	p.run(t, chromedp.SetValue(chromedp.ID("edit-value"), value), chromedp.Click(chromedp.ID("edit-save")))
}

const editorState = `{msg: document.querySelector("#edit-msg").textContent, conflict: document.querySelector("#conflict").hidden ? null : document.querySelector("#conflict").textContent}`

// TestDashboardEditsVisibleThroughREST edits, creates and deletes keys in
// the dashboard and reads the results through REST.
func TestDashboardEditsVisibleThroughREST(t *testing.T) {
	s := startServer(t)
	b := newBrowser(t)
	before := s.put(t, "app/greeting", "hello")
	p := openDashboard(t, b, s, "?prefix=app/")

	editKey(t, p, "app/greeting", "hello")
	saveValue(t, p, "hello, world\nsecond line")
	p.waitFor(t, "saved", `document.querySelector("#edit-msg").textContent.startsWith("Saved at revision")`, editorState, waitTimeout)
	got, found := s.get(t, "app/greeting")
	if !found || got.KV.Value != "hello, world\nsecond line" || got.KV.Version != 2 || got.KV.ModRevision <= before.KV.ModRevision {
		t.Errorf("after the edit REST reads %+v (found %v), want the new value at version 2 after revision %d", got.KV, found, before.KV.ModRevision)
	}

	// A second save starts from the revision the first made: no conflict.
	saveValue(t, p, "third")
	p.waitFor(t, "saved again", fmt.Sprintf(`document.querySelector("#edit-msg").textContent === "Saved at revision %d."`, got.KV.ModRevision+1), editorState, waitTimeout)
	if got, _ := s.get(t, "app/greeting"); got.KV.Value != "third" || got.KV.Version != 3 {
		t.Errorf("after the second edit REST reads %+v, want third at version 3", got.KV)
	}

	// Create a key.
	p.run(t, chromedp.Click(chromedp.ID("new-key")),
		chromedp.WaitVisible(chromedp.ID("edit-key")),
		chromedp.SetValue(chromedp.ID("edit-key"), "app/new key/ü"))
	saveValue(t, p, "created in the browser")
	p.waitFor(t, "created", `document.querySelector("#edit-msg").textContent.startsWith("Saved at revision")`, editorState, waitTimeout)
	got, found = s.get(t, "app/new key/ü")
	if !found || got.KV.Value != "created in the browser" || got.KV.Version != 1 {
		t.Errorf("after creating, REST reads %+v (found %v)", got.KV, found)
	}
	p.waitFor(t, "created key listed", rowJS("app/new key/ü"), keyRows, waitTimeout)

	// Delete it: the first click arms the button, the second deletes.
	p.run(t, chromedp.Click(chromedp.ID("edit-delete")))
	p.waitFor(t, "delete armed", `document.querySelector("#edit-delete").textContent === "Confirm delete"`, editorState, waitTimeout)
	if _, found := s.get(t, "app/new key/ü"); !found {
		t.Fatalf("the key was deleted on the first click")
	}
	p.run(t, chromedp.Click(chromedp.ID("edit-delete")))
	p.waitFor(t, "deleted key gone from the list", rowJS("app/new key/ü")+` === null`, keyRows, waitTimeout)
	if _, found := s.get(t, "app/new key/ü"); found {
		t.Errorf("REST still finds the key the dashboard deleted")
	}
}

// TestDashboardShowsConflict edits a key that someone else changes in the
// meantime: the dashboard warns as soon as it sees the change, its save
// is refused with the current value shown, nothing is overwritten until
// the user says so, and "Load theirs" and "Overwrite with mine" do what
// they say.
func TestDashboardShowsConflict(t *testing.T) {
	s := startServer(t)
	b := newBrowser(t)
	s.put(t, "cfg/limit", "10")
	p := openDashboard(t, b, s, "?prefix=cfg/")
	editKey(t, p, "cfg/limit", "10")

	theirs := s.put(t, "cfg/limit", "20 (theirs)")
	p.waitFor(t, "stale warning", `!document.querySelector("#stale").hidden && document.querySelector("#stale").textContent.includes("revision `+fmt.Sprint(theirs.KV.ModRevision)+`")`,
		`document.querySelector("#stale").textContent`, waitTimeout)

	saveValue(t, p, "15 (mine)")
	p.waitFor(t, "conflict shown", `!document.querySelector("#conflict").hidden`, editorState, waitTimeout)
	var conflict struct {
		Text, Theirs, Mine string
	}
	p.eval(t, `({text: document.querySelector("#conflict-text").textContent, theirs: document.querySelector("#conflict-theirs").textContent, mine: document.querySelector("#edit-value").value})`, &conflict)
	if conflict.Theirs != "20 (theirs)" || conflict.Mine != "15 (mine)" {
		t.Errorf("conflict shows theirs %q and keeps mine %q; want 20 (theirs) and 15 (mine)", conflict.Theirs, conflict.Mine)
	}
	if want := fmt.Sprintf("now at revision %d, version 2", theirs.KV.ModRevision); !strings.Contains(conflict.Text, want) {
		t.Errorf("conflict text %q does not say %q", conflict.Text, want)
	}
	if got, _ := s.get(t, "cfg/limit"); got.KV.Value != "20 (theirs)" {
		t.Fatalf("the refused save changed the key: %q", got.KV.Value)
	}

	// Load theirs: the editor now starts from their version.
	p.run(t, chromedp.Click(chromedp.ID("conflict-load")))
	p.waitFor(t, "their value loaded", `document.querySelector("#conflict").hidden && document.querySelector("#edit-value").value === "20 (theirs)"`, editorState, waitTimeout)

	// Another change, another conflict; this time overwrite.
	third := s.put(t, "cfg/limit", "30 (third)")
	saveValue(t, p, "25 (mine again)")
	p.waitFor(t, "second conflict shown", `!document.querySelector("#conflict").hidden && document.querySelector("#conflict-theirs").textContent === "30 (third)"`, editorState, waitTimeout)
	p.run(t, chromedp.Click(chromedp.ID("conflict-overwrite")))
	p.waitFor(t, "overwritten", `document.querySelector("#conflict").hidden && document.querySelector("#edit-msg").textContent.startsWith("Saved")`, editorState, waitTimeout)
	got, _ := s.get(t, "cfg/limit")
	if got.KV.Value != "25 (mine again)" || got.KV.ModRevision != third.KV.ModRevision+1 {
		t.Errorf("after overwriting REST reads %+v, want 25 (mine again) at revision %d", got.KV, third.KV.ModRevision+1)
	}
}

// TestDashboardCompacts compacts from the dashboard (the button asks for a
// second click) and checks the store, the status panel, and the event
// log's report of a watch that needs compacted history.
func TestDashboardCompacts(t *testing.T) {
	s := startServer(t)
	b := newBrowser(t)
	var revs []int64
	for i := range 4 {
		revs = append(revs, s.put(t, "c/k", fmt.Sprint(i)).Revision)
	}
	p := openDashboard(t, b, s, "?prefix=c/")
	at := revs[2]
	p.run(t, chromedp.SetValue(chromedp.ID("compact-rev"), fmt.Sprint(at)), chromedp.Click(chromedp.ID("compact-btn")))
	p.waitFor(t, "compaction asks for confirmation", `document.querySelector("#compact-btn").textContent.startsWith("Confirm")`,
		`document.querySelector("#compact-btn").textContent`, waitTimeout)
	if resp := s.getAt(t, "c/k", revs[0]); resp.StatusCode != http.StatusOK {
		t.Fatalf("the first click compacted already: GET at revision %d: %d", revs[0], resp.StatusCode)
	}
	p.run(t, chromedp.Click(chromedp.ID("compact-btn")))
	p.waitFor(t, "compacted", fmt.Sprintf(`document.querySelector("#status-msg").textContent === "Compacted: history before revision %d is gone." && document.querySelector("#st-compact").textContent === "%d"`, at, at),
		`{msg: document.querySelector("#status-msg").textContent, compact: document.querySelector("#st-compact").textContent}`, waitTimeout)

	// The store agrees.
	if resp := s.getAt(t, "c/k", revs[0]); resp.StatusCode != http.StatusGone || resp.Header.Get("X-Compact-Revision") != fmt.Sprint(at) {
		t.Errorf("GET at revision %d after compacting at %d: %d, X-Compact-Revision %s; want 410 and %d",
			revs[0], at, resp.StatusCode, resp.Header.Get("X-Compact-Revision"), at)
	}

	// Compacting again below the compact revision is refused, and said so.
	p.run(t, chromedp.SetValue(chromedp.ID("compact-rev"), fmt.Sprint(revs[1])), chromedp.Click(chromedp.ID("compact-btn")), chromedp.Click(chromedp.ID("compact-btn")))
	p.waitFor(t, "second compaction refused", `document.querySelector("#status-msg").textContent.startsWith("Compaction failed: 409")`,
		`document.querySelector("#status-msg").textContent`, waitTimeout)

	// An event log from before the compact revision is told its history is
	// gone.
	p.run(t, chromedp.SetValue(chromedp.ID("log-key"), "c/"), chromedp.SetValue(chromedp.ID("log-rev"), fmt.Sprint(revs[0])), chromedp.Click(chromedp.ID("log-start")))
	p.waitFor(t, "event log reports compaction", `document.querySelector('#log li.marker[data-kind="compacted"]')?.textContent.includes("before revision `+fmt.Sprint(at)+`")`,
		`document.querySelector("#log").textContent`, waitTimeout)
}
