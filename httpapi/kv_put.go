package httpapi

import (
	"net/http"

	"github.com/watchgate/watchgate/kv"
	"github.com/watchgate/watchgate/kvjson"
)

// putKV serves PUT /v1/kv/{key}: the body is the value. It answers 201 when
// the key was created and 200 when it was updated, with
// {"revision":R,"kv":{...no value},"prev_kv":{...}} (prev_kv only with
// ?prev_kv=true and an existing previous version). If-Match and
// If-None-Match make it a compare-and-swap transaction; when the condition
// fails nothing is written and the answer is 412 with the current kv.
func (s *Server) putKV(w http.ResponseWriter, r *http.Request) {
	req, err := s.parseKVRequest(r, oneKeyWrite)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	key := req.key
	prevKV, err := queryBool(req.q, "prev_kv")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	cmps, cond, err := writeConditions(r.Header, key)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	value, err := readBody(w, r, int64(s.opts.MaxValueSize), kv.ErrValueTooLarge, "the value")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	txn := kv.TxnRequest{
		Compare: cmps,
		Success: []kv.Op{{Type: kv.OpPut, Key: key, Value: value}},
	}
	if len(cmps) > 0 {
		txn.Failure = []kv.Op{{Type: kv.OpGet, Key: key}}
	}
	resp, err := s.store.Txn(r.Context(), txn)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	setRevisionHeaders(w, resp.Revision, 0)
	if !resp.Succeeded {
		s.writeError(w, r, preconditionFailed(cond, resp))
		return
	}
	if len(resp.Responses) != 1 || resp.Responses[0].KV == nil {
		s.writeError(w, r, errBrokenTxnResponse)
		return
	}
	res := resp.Responses[0]
	status := http.StatusOK
	if res.PrevKV == nil {
		status = http.StatusCreated
		setHeader(w, "Location", kvPathPrefix+escapeKey(key))
	}
	setHeader(w, "Etag", formatInt(w, res.KV.ModRevision, true))
	b := appendRevision(make([]byte, 0, 128+2*len(key)), resp.Revision)
	b = append(b, `,"kv":`...)
	b = kvjson.AppendKV(b, res.KV, true)
	if prevKV && res.PrevKV != nil {
		b = append(b, `,"prev_kv":`...)
		b = kvjson.AppendKV(b, res.PrevKV, false)
	}
	b = append(b, '}')
	writeJSON(w, r, status, b)
}

// checkWriteKey rejects the empty key and a key over the size limit.
func (s *Server) checkWriteKey(key []byte) error {
	switch {
	case len(key) == 0:
		return &requestError{kind: kv.ErrEmptyKey, msg: "the empty key cannot be written"}
	case len(key) > s.opts.MaxKeySize:
		return &requestError{kind: kv.ErrKeyTooLarge,
			msg: "key is " + itoa(int64(len(key))) + " bytes, over the limit of " + formatSize(int64(s.opts.MaxKeySize))}
	}
	return nil
}

// preconditionFailed builds the 412 of a conditional write whose failure
// branch read the key.
func preconditionFailed(cond string, resp kv.TxnResponse) error {
	e := &preconditionError{cond: cond, rev: resp.Revision}
	if len(resp.Responses) == 1 && resp.Responses[0].Range != nil && len(resp.Responses[0].Range.KVs) > 0 {
		e.current = &resp.Responses[0].Range.KVs[0]
	}
	return e
}
