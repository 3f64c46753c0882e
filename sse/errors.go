package sse

import "errors"

var (
	// ErrInvalidField is returned for an id or event name that is not valid
	// UTF-8 or holds CR, LF or NUL: written as is, it could start a new
	// field or event, and a browser drops an id holding NUL.
	ErrInvalidField = errors.New("sse: id or event name holds CR, LF, NUL or invalid UTF-8")
	// ErrInvalidData is returned for event data that is not valid UTF-8: a
	// client decodes the stream as UTF-8 and would not see the same bytes.
	ErrInvalidData = errors.New("sse: event data is not valid UTF-8")
	// ErrInvalidID is returned by ParsePosition for a Last-Event-ID that is
	// not a resume id of this API.
	ErrInvalidID = errors.New("sse: invalid event id")
	// ErrInvalidProblem is returned by Encoder.WriteError for a problem that
	// is not one JSON value.
	ErrInvalidProblem = errors.New("sse: problem is not valid JSON")
	// ErrBadRequest is wrapped by every error of a malformed watch request
	// (a parameter, a Last-Event-ID, a key range), answered 400 before the
	// stream starts.
	ErrBadRequest = errors.New("sse: bad watch request")
	// ErrUnavailable is returned for a watch requested while the server
	// shuts down (Handler.Shutdown, or the hub closed), answered 503.
	ErrUnavailable = errors.New("sse: watch service is shutting down")
)
