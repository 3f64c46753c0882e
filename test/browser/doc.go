// Package browser holds end-to-end tests of the dashboard and of
// watchgate.js: they run the real server on loopback and drive Debian's
// headless Chromium with chromedp. Chromium must be installed (Debian
// package chromium; make test installs it): without it the tests fail,
// they do not skip.
//
// On a failure each test saves a screenshot of every page it drove in an
// artifacts directory, named in the test's log: $WATCHGATE_ARTIFACTS when
// set, else a new directory under the system's temporary directory.
package browser
