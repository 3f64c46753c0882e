// Package httpapi serves watchgate's HTTP API: the chi router, the REST
// key-value handlers, status, snapshot, health and the middleware every
// request goes through (request id, access log, recoverer, and the
// X-Revision / X-Compact-Revision headers on every response).
//
// Every error reaches the client as an RFC 9457 application/problem+json
// document through one table (problem.go) that maps the store's and this
// package's sentinel errors to a status; an error that is not in the table
// is logged and shown as "internal error".
//
// Keys travel in the URL path: the key is the whole rest of the path after
// /v1/kv/, percent-decoded from the escaped path, so any byte (a slash
// included, literal or as %2F) can be part of a key.
//
// Streaming transports (Server-Sent Events, WebSocket) are plugged in through
// Options; they stay out of every timeout and buffering of this package.
package httpapi
