// Package access decides who may read and write which keys: the tokens of
// an access file, each allowed to read and/or write under key prefixes.
//
// An access file is YAML (or JSON, which is YAML too):
//
//	tokens:
//	  - name: deploy-bot
//	    sha256: 6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b
//	    read: ["config/", "status/"]
//	    write: ["config/"]
//	  - name: dashboard
//	    sha256: d4735e3a265e16eee03f59718b9b5d03019c07d8b6c51f90da3a666eec13ab35
//	    read: [""]            # "" is every key
//	    expires: 2030-01-01T00:00:00Z
//
// Tokens are stored only as the hex SHA-256 of the token. Tokens are
// random secrets of 256 bits (NewToken, `watchgate token`), not passwords,
// so a slow password hash would add nothing: nobody can guess a preimage
// of a 256-bit random value, and a fast hash lets every request be checked
// without a cache. Prefixes that are not UTF-8 go in read_b64 / write_b64
// as standard base64.
//
// A Policy is immutable; reloading the file makes a new one. A Principal is
// what a token may do. Permission checks take a key range in the store's
// conventions (kv.RangeRequest, watchhub.WatchRequest): end nil or empty is
// the single key, end {0} every key from key on, otherwise [key, end). A
// range is allowed when every key in it is under an allowed prefix,
// however the prefixes combine: "a" and "b" together allow [a, c).
package access
