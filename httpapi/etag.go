package httpapi

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/watchgate/watchgate/kv"
)

// entityTag is one entity-tag of an If-Match or If-None-Match header. A
// key's entity tag is its mod_revision in quotes; rev is -1 for a tag that
// is not a revision (and so matches no key).
type entityTag struct {
	weak bool
	rev  int64
}

// etagList is a parsed If-Match / If-None-Match header.
type etagList struct {
	present bool
	any     bool // "*"
	tags    []entityTag
	raw     string
}

// formatETag is the strong entity tag of a key at mod revision rev.
func formatETag(rev int64) string { return `"` + strconv.FormatInt(rev, 10) + `"` }

// parseETagList parses the named header (all its lines): "*" or a
// comma-separated list of entity-tags, as RFC 9110 section 8.8.3 writes
// them. A malformed header is ErrBadRequest.
func parseETagList(h http.Header, name string) (etagList, error) {
	vals := h.Values(name)
	if len(vals) == 0 {
		return etagList{}, nil
	}
	s := strings.Join(vals, ",")
	l := etagList{present: true, raw: name + ": " + s}
	for {
		s = strings.TrimLeft(s, " \t,")
		if s == "" {
			break
		}
		if s[0] == '*' {
			l.any = true
			s = s[1:]
			continue
		}
		var t entityTag
		if strings.HasPrefix(s, "W/") {
			t.weak = true
			s = s[2:]
		}
		if s == "" || s[0] != '"' {
			return etagList{}, badRequest("malformed %s header: entity tags must be quoted, as \"5\"", name)
		}
		end := strings.IndexByte(s[1:], '"')
		if end < 0 {
			return etagList{}, badRequest("malformed %s header: unterminated entity tag", name)
		}
		opaque := s[1 : 1+end]
		s = s[2+end:]
		for i := 0; i < len(opaque); i++ {
			if c := opaque[i]; c < 0x21 || c == 0x7f {
				return etagList{}, badRequest("malformed %s header: bad character in entity tag", name)
			}
		}
		t.rev = -1
		if n, err := strconv.ParseInt(opaque, 10, 64); err == nil && n > 0 && opaque[0] != '+' {
			t.rev = n
		}
		l.tags = append(l.tags, t)
		if s != "" && s[0] != ',' && s[0] != ' ' && s[0] != '\t' {
			return etagList{}, badRequest("malformed %s header: expected a comma after an entity tag", name)
		}
	}
	if l.any && len(l.tags) > 0 {
		return etagList{}, badRequest("malformed %s header: \"*\" must stand alone", name)
	}
	if !l.any && len(l.tags) == 0 {
		return etagList{}, badRequest("malformed %s header: no entity tag", name)
	}
	return l, nil
}

// matchesWeak reports whether the list matches a key at mod revision rev
// under the weak comparison of If-None-Match.
func (l etagList) matchesWeak(rev int64) bool {
	if l.any {
		return true
	}
	for _, t := range l.tags {
		if t.rev == rev {
			return true
		}
	}
	return false
}

// writeConditions turns the If-Match and If-None-Match headers of a write
// into store compares on key, as etcd clients write them: If-Match "N" is
// mod = N (a weak or non-revision tag never matches), If-Match * is
// version > 0, If-None-Match * is version = 0 and If-None-Match "N"... is
// mod != N for each N. The text names the headers for a 412's detail.
func writeConditions(h http.Header, key []byte) (cmps []kv.Compare, text string, err error) {
	im, err := parseETagList(h, "If-Match")
	if err != nil {
		return nil, "", err
	}
	inm, err := parseETagList(h, "If-None-Match")
	if err != nil {
		return nil, "", err
	}
	var texts []string
	if im.present {
		texts = append(texts, im.raw)
		switch {
		case im.any:
			cmps = append(cmps, kv.Compare{Key: key, Target: kv.CompareVersion, Op: kv.CompareGreater, Number: 0})
		case len(im.tags) > 1:
			return nil, "", badRequest("If-Match with several entity tags is not supported; give one")
		default:
			rev := im.tags[0].rev
			if im.tags[0].weak {
				rev = -1 // strong comparison: a weak tag never matches
			}
			cmps = append(cmps, kv.Compare{Key: key, Target: kv.CompareMod, Op: kv.CompareEqual, Number: rev})
		}
	}
	if inm.present {
		texts = append(texts, inm.raw)
		if inm.any {
			cmps = append(cmps, kv.Compare{Key: key, Target: kv.CompareVersion, Op: kv.CompareEqual, Number: 0})
		}
		for _, t := range inm.tags {
			if t.rev > 0 {
				cmps = append(cmps, kv.Compare{Key: key, Target: kv.CompareMod, Op: kv.CompareNotEqual, Number: t.rev})
			}
		}
	}
	return cmps, strings.Join(texts, " and "), nil
}
