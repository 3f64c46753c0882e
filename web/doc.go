// Package web holds the browser side of watchgate, embedded in the binary:
// the dashboard served at / and the JavaScript client served at
// /watchgate.js.
//
// Files is the embedded tree as it is served:
//
//	index.html     the dashboard, at /
//	watchgate.js   the browser client, an ES module, at /watchgate.js
//	ui/app.js      the dashboard's script, ui/style.css its style sheet,
//	ui/icon.svg    its icon: everything under /ui/
//
// The dashboard loads nothing from anywhere else (no CDN), so it works
// offline and under a strict Content-Security-Policy. watchgate.js has no
// dependency: a page imports it with
//
//	import { Watchgate } from "/watchgate.js";
//
// and gets REST calls that throw problem+json errors as objects, watches
// multiplexed over one WebSocket (subprotocol watchgate.v1) that reconnect
// with jittered backoff and resume by revision, live replicas of a range
// (snapshot watches), and an EventSource wrapper for Server-Sent Events.
//
// The package imports only the standard library: the API's router mounts
// Handler at the paths of Patterns.
package web
