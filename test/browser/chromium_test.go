package browser

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumNames are the commands tried for the browser, in order; the
// CHROMIUM environment variable names another.
var chromiumNames = []string{"chromium", "chromium-browser"}

// chromiumPath returns the browser's executable, failing the test when
// there is none: these tests need it, and make test installs it.
func chromiumPath(tb testing.TB) string {
	tb.Helper()
	names := chromiumNames
	if c := os.Getenv("CHROMIUM"); c != "" {
		names = []string{c}
	}
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	tb.Fatalf("no Chromium: none of %q is on PATH. The browser tests need Debian's chromium package "+
		"(apt-get install -y --no-install-recommends chromium; make test installs it), or CHROMIUM=/path/to/chrome", names)
	return ""
}

// browser is one headless Chromium for one test; each page is a tab.
type browser struct {
	t   *testing.T
	ctx context.Context // the browser's first tab; new tabs derive from it

	mu    sync.Mutex
	pages []*page
	wg    sync.WaitGroup // the pages' console readers
}

// page is one tab. Uncaught JavaScript exceptions fail the test; console
// output goes to the test's log.
type page struct {
	name string
	ctx  context.Context
}

// newBrowser starts Chromium with the flags that work in a closed
// network: without the background-networking ones it tries to reach
// Google's services and its connections are refused. The browser is
// stopped when the test ends, after a screenshot of every page if the test
// failed.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	exe := chromiumPath(t)
	profile := t.TempDir()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("mute-audio", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 900),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	b := &browser{t: t, ctx: ctx}
	t.Cleanup(func() {
		if t.Failed() {
			b.screenshots()
		}
		cancelCtx()
		cancelAlloc()
		// The console readers log to t: they must be done before it is.
		b.wg.Wait()
	})
	// Start the browser now, so that a broken installation fails here,
	// clearly. The first Run must not have a timeout: it would stop the
	// browser.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", exe, err)
	}
	return b
}

// newPage opens a tab named name (for the log and the screenshot) at url
// and waits until its document is loaded.
func (b *browser) newPage(name, url string) *page {
	b.t.Helper()
	t := b.t
	ctx := b.ctx
	b.mu.Lock()
	if len(b.pages) > 0 {
		ctx, _ = chromedp.NewContext(b.ctx) // canceled with the browser
	}
	p := &page{name: name, ctx: ctx}
	b.pages = append(b.pages, p)
	b.mu.Unlock()

	messages := chromedp.Console(ctx)
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.IsException() {
				t.Errorf("[%s] uncaught JavaScript exception at %s:%d: %s", name, m.URL, m.Line+1, m.Text)
				continue
			}
			t.Logf("[%s console %s] %s", name, m.Type, m.Text)
		}
	}()
	if url != "" {
		p.run(t, chromedp.Navigate(url))
	}
	return p
}

// run runs actions on the page, failing the test on error.
func (p *page) run(tb testing.TB, actions ...chromedp.Action[chromedp.Void]) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		tb.Fatalf("[%s] %v", p.name, err)
	}
}

// eval evaluates a JavaScript expression on the page (awaiting it if it
// is a promise) and decodes its JSON value into out (which may be nil).
func (p *page) eval(tb testing.TB, expr string, out any) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		tb.Fatalf("[%s] evaluating %.200s: %v", p.name, expr, err)
	}
	if out == nil {
		return
	}
	if err := json.Unmarshal(raw, out); err != nil {
		tb.Fatalf("[%s] %.200s: decoding %.200s: %v", p.name, expr, raw, err)
	}
}

// waitFor polls the JavaScript expression cond until it is true, failing
// the test after timeout with what describe (another expression) then
// evaluates to.
func (p *page) waitFor(tb testing.TB, what, cond, describe string, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var ok bool
		p.eval(tb, "Boolean("+cond+")", &ok)
		if ok {
			return
		}
		if time.Now().After(deadline) {
			var state json.RawMessage
			if describe != "" {
				p.eval(tb, "JSON.stringify("+describe+") ?? null", &state)
			}
			tb.Fatalf("[%s] %s: not after %v; the page shows %s", p.name, what, timeout, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// screenshots saves a full-page PNG of every page in the artifacts
// directory.
func (b *browser) screenshots() {
	dir := artifactsDir(b.t)
	b.mu.Lock()
	pages := append([]*page(nil), b.pages...)
	b.mu.Unlock()
	for _, p := range pages {
		ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		cancel()
		if err != nil {
			b.t.Logf("screenshot of %s: %v", p.name, err)
			continue
		}
		file := filepath.Join(dir, fileName(b.t.Name()+"-"+p.name)+".png")
		if err := os.WriteFile(file, png, 0o644); err != nil {
			b.t.Logf("screenshot of %s: %v", p.name, err)
			continue
		}
		b.t.Logf("screenshot of %s: %s", p.name, file)
	}
}

var (
	artifactsOnce sync.Once
	artifacts     string
	artifactsErr  error
)

// artifactsDir is where failing tests leave their screenshots:
// $WATCHGATE_ARTIFACTS, or one new directory per test run.
func artifactsDir(tb testing.TB) string {
	artifactsOnce.Do(func() {
		if d := os.Getenv("WATCHGATE_ARTIFACTS"); d != "" {
			artifacts, artifactsErr = d, os.MkdirAll(d, 0o755)
			return
		}
		artifacts, artifactsErr = os.MkdirTemp("", "watchgate-browser-artifacts-")
	})
	if artifactsErr != nil {
		tb.Logf("artifacts directory: %v; using the current directory", artifactsErr)
		return "."
	}
	return artifacts
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func fileName(s string) string { return unsafeName.ReplaceAllString(s, "_") }

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(fmt.Sprintf("quoting %q: %v", s, err))
	}
	return string(b)
}
