package httpapi

import (
	"net/http"
	"strconv"

	"github.com/watchgate/watchgate/kv"
)

// deleteKV serves DELETE /v1/kv/{key}: one key (404 when missing) or, with
// prefix=true or range_end, a range (200 even when nothing was deleted).
// It answers {"revision":R,"deleted":N}, plus "prev_kvs" with
// ?prev_kv=true. If-Match and If-None-Match apply to a single key as for PUT.
func (s *Server) deleteKV(w http.ResponseWriter, r *http.Request) {
	req, err := s.parseKVRequest(r, rangeWrite)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	key, kr := req.key, req.kr
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
	if cond != "" && kr.isRange() {
		s.writeError(w, r, badRequest("If-Match and If-None-Match apply to a single key, not to a range"))
		return
	}
	txn := kv.TxnRequest{
		Compare: cmps,
		Success: []kv.Op{{Type: kv.OpDelete, Key: kr.key, End: kr.end}},
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
	if len(resp.Responses) != 1 {
		s.writeError(w, r, errBrokenTxnResponse)
		return
	}
	res := resp.Responses[0]
	if !kr.isRange() && res.Deleted == 0 {
		s.writeError(w, r, &requestError{kind: kv.ErrKeyNotFound,
			msg: "key " + strconv.Quote(string(key)) + " does not exist"})
		return
	}
	b := appendRevision(make([]byte, 0, 64), resp.Revision)
	b = append(b, `,"deleted":`...)
	b = strconv.AppendInt(b, res.Deleted, 10)
	if prevKV {
		b = append(b, `,"prev_kvs":`...)
		b = appendKVs(b, res.PrevKVs, false)
	}
	b = append(b, '}')
	writeJSON(w, r, http.StatusOK, b)
}
