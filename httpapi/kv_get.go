package httpapi

import (
	"bytes"
	"math"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/watchgate/watchgate/kv"
	"github.com/watchgate/watchgate/kvjson"
)

const kvPathPrefix = "/v1/kv/"

// getKV serves GET and HEAD /v1/kv/{key}: one key (raw value or JSON) or,
// with prefix=true or range_end, a range (always JSON).
func (s *Server) getKV(w http.ResponseWriter, r *http.Request) {
	req, err := s.parseKVRequest(r, rangeRead)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	q, kr := req.q, req.kr
	rev, err := queryInt(q, "rev", 0, 0, math.MaxInt64)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if kr.isRange() {
		s.getRange(w, r, q, kr, rev)
		return
	}
	s.getOne(w, r, q, kr.key, rev)
}

// getOne answers one key: its raw value with its metadata in headers, or
// {"revision":R,"kv":{...}} when JSON is asked for.
func (s *Server) getOne(w http.ResponseWriter, r *http.Request, q url.Values, key []byte, rev int64) {
	asJSON, err := wantsJSON(r, q)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	inm, err := parseETagList(r.Header, "If-None-Match")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	res, err := s.store.Range(r.Context(), kv.RangeRequest{Key: key, Rev: s.readRevision(rev)})
	if err != nil {
		s.writeError(w, r, readError(err, rev))
		return
	}
	setRevisionHeaders(w, res.Rev, 0)
	h := w.Header()
	h.Set("Vary", "Accept")
	if len(res.KVs) == 0 {
		s.writeError(w, r, &requestError{kind: kv.ErrKeyNotFound,
			msg: "key " + strconv.Quote(string(key)) + " does not exist at revision " + strconv.FormatInt(res.Rev, 10)})
		return
	}
	item := &res.KVs[0]
	h.Set("ETag", formatETag(item.ModRevision))
	h.Set("X-Create-Revision", strconv.FormatInt(item.CreateRevision, 10))
	h.Set("X-Mod-Revision", strconv.FormatInt(item.ModRevision, 10))
	h.Set("X-Version", strconv.FormatInt(item.Version, 10))
	h.Set("Cache-Control", "no-cache")
	if inm.present && inm.matchesWeak(item.ModRevision) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if asJSON {
		b := appendRevision(make([]byte, 0, 128+len(item.Key)+len(item.Value)), res.Rev)
		b = append(b, `,"kv":`...)
		b = kvjson.AppendKV(b, item, false)
		b = append(b, '}')
		writeJSON(w, r, http.StatusOK, b)
		return
	}
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.Itoa(len(item.Value)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(item.Value)
	}
}

// wantsJSON reports whether a single-key read asks for the JSON form:
// format=json, or an Accept header that names application/json (with a
// non-zero weight). Any other format is ErrBadRequest.
func wantsJSON(r *http.Request, q url.Values) (bool, error) {
	switch f := q.Get("format"); f {
	case "json":
		return true, nil
	case "":
	default:
		return false, badRequest("format must be json, not %q", f)
	}
	for _, line := range r.Header.Values("Accept") {
		for _, part := range strings.Split(line, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil || mt != "application/json" {
				continue
			}
			if q, ok := params["q"]; ok {
				if f, err := strconv.ParseFloat(q, 64); err == nil && f == 0 {
					continue
				}
			}
			return true, nil
		}
	}
	return false, nil
}

// getRange answers a range read:
// {"revision":R,"kvs":[...],"count":N,"more":bool,"continue":"TOKEN"}.
// Pages after the first read at the first page's revision (carried in the
// continue token); count is, as in etcd, the number of keys from the page's
// first key to the end of the range.
func (s *Server) getRange(w http.ResponseWriter, r *http.Request, q url.Values, kr keyRange, rev int64) {
	limit, err := queryInt(q, "limit", defaultLimit, 1, maxLimit)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	keysOnly, err := queryBool(q, "keys_only")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	countOnly, err := queryBool(q, "count_only")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if c := q.Get("continue"); c != "" {
		tok, err := decodeContinueToken(c)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if rev != 0 && rev != tok.rev {
			s.writeError(w, r, badRequest("rev=%d differs from the revision %d of the continue token", rev, tok.rev))
			return
		}
		if !inRange(tok.next, kr) {
			s.writeError(w, r, badRequest("the continue token belongs to another range: send the same key, prefix and range_end as for the first page"))
			return
		}
		kr.key, rev = tok.next, tok.rev
	}
	rev = s.readRevision(rev)
	res, err := s.store.Range(r.Context(), kv.RangeRequest{
		Key: kr.key, End: kr.end, Rev: rev, Limit: limit, KeysOnly: keysOnly, CountOnly: countOnly,
	})
	if err != nil {
		s.writeError(w, r, readError(err, rev))
		return
	}
	setRevisionHeaders(w, res.Rev, 0)
	w.Header().Set("Cache-Control", "no-cache")
	b := appendRevision(make([]byte, 0, 256), res.Rev)
	more := res.More && !countOnly
	if !countOnly {
		b = append(b, `,"kvs":`...)
		b = appendKVs(b, res.KVs, keysOnly)
	}
	b = append(b, `,"count":`...)
	b = strconv.AppendInt(b, res.Count, 10)
	b = append(b, `,"more":`...)
	b = strconv.AppendBool(b, more)
	if more && len(res.KVs) > 0 {
		tok := continueToken{rev: res.Rev, next: nextKey(res.KVs[len(res.KVs)-1].Key)}
		b = append(b, `,"continue":"`...)
		b = append(b, tok.encode()...)
		b = append(b, '"')
	}
	b = append(b, '}')
	writeJSON(w, r, http.StatusOK, b)
}

// inRange reports whether k lies in [kr.key, kr.end); an end of "\x00"
// means no upper bound.
func inRange(k []byte, kr keyRange) bool {
	if bytes.Compare(k, kr.key) < 0 {
		return false
	}
	return bytes.Equal(kr.end, []byte{0}) || bytes.Compare(k, kr.end) < 0
}

// readRevision is the revision a read at rev= serves: rev, or for 0 the
// store's published current revision, whose writes are acknowledged and
// announced to the watchers. The store's file may already hold a later
// commit that is neither yet; a client that read it and then watched "from
// now" would be sent that write again.
//
// A store that reads at revision 0 by itself only what it has published
// (the etcd backend: a linearizable read, then a wait for its own feed)
// gets 0 through: its published revision lags the cluster, and a read
// pinned there would miss a write another gateway acknowledged before the
// read began.
func (s *Server) readRevision(rev int64) int64 {
	if cr, ok := s.store.(interface{ ReadsAtCurrent() bool }); ok && cr.ReadsAtCurrent() {
		return rev
	}
	if rev == 0 {
		rev, _ = s.store.Revisions()
	}
	return rev
}
