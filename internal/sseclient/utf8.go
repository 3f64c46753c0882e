package sseclient

import (
	"bufio"
	"io"
	"unicode/utf8"
)

// decoder is the WHATWG Encoding Standard's UTF-8 decoder with the
// "replacement" error mode, as the event stream algorithm requires
// ("streams must be decoded using the UTF-8 decode algorithm"): every
// maximal ill-formed subpart becomes one U+FFFD, and a byte that breaks a
// sequence is decoded again on its own. A leading BOM is left to the
// caller, which strips one.
type decoder struct {
	r *bufio.Reader

	codePoint  rune
	bytesSeen  int
	bytesNeed  int
	lowerBound byte
	upperBound byte
	// err is the reader's first error, returned from then on.
	err error
}

func newDecoder(r io.Reader) *decoder {
	return &decoder{r: bufio.NewReaderSize(r, 4096), lowerBound: 0x80, upperBound: 0xBF}
}

// next returns the next code point, or the reader's error (io.EOF at the
// end). A sequence cut short by the end of the stream gives U+FFFD before
// io.EOF.
func (d *decoder) next() (rune, error) {
	if d.err != nil {
		return 0, d.err
	}
	for {
		b, err := d.r.ReadByte()
		if err != nil {
			d.err = err
			// Step 1: end of queue in the middle of a sequence.
			if d.bytesNeed != 0 {
				d.bytesNeed, d.bytesSeen, d.codePoint = 0, 0, 0
				d.lowerBound, d.upperBound = 0x80, 0xBF
				return utf8.RuneError, nil
			}
			return 0, err
		}
		if d.bytesNeed == 0 {
			switch {
			case b <= 0x7F:
				return rune(b), nil
			case b >= 0xC2 && b <= 0xDF:
				d.bytesNeed = 1
				d.codePoint = rune(b & 0x1F)
			case b >= 0xE0 && b <= 0xEF:
				if b == 0xE0 {
					d.lowerBound = 0xA0
				}
				if b == 0xED {
					d.upperBound = 0x9F
				}
				d.bytesNeed = 2
				d.codePoint = rune(b & 0xF)
			case b >= 0xF0 && b <= 0xF4:
				if b == 0xF0 {
					d.lowerBound = 0x90
				}
				if b == 0xF4 {
					d.upperBound = 0x8F
				}
				d.bytesNeed = 3
				d.codePoint = rune(b & 0x7)
			default:
				return utf8.RuneError, nil
			}
			continue
		}
		if b < d.lowerBound || b > d.upperBound {
			d.codePoint, d.bytesNeed, d.bytesSeen = 0, 0, 0
			d.lowerBound, d.upperBound = 0x80, 0xBF
			// Restore the byte: it starts the next code point.
			_ = d.r.UnreadByte()
			return utf8.RuneError, nil
		}
		d.lowerBound, d.upperBound = 0x80, 0xBF
		d.codePoint = d.codePoint<<6 | rune(b&0x3F)
		d.bytesSeen++
		if d.bytesSeen != d.bytesNeed {
			continue
		}
		cp := d.codePoint
		d.codePoint, d.bytesNeed, d.bytesSeen = 0, 0, 0
		return cp, nil
	}
}
