package kv

import (
	"errors"
	"fmt"
	"unicode/utf16"
	"unicode/utf8"
)

// Keys and values are text. encoding/json replaces what is not (bytes
// that are not UTF-8, and \u escapes of unpaired UTF-16 surrogates) with
// U+FFFD without a word; the HTTP API refuses them instead, with these
// checks.

// ErrNotText refuses a key or value that is not valid UTF-8, which the
// HTTP API cannot carry unaltered.
var ErrNotText = errors.New("kv: not valid UTF-8")

// invalidUTF8At returns the offset of the first byte of s that is not
// part of valid UTF-8, or -1.
func invalidUTF8At(s string) int {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size == 1 {
				return i
			}
		}
	}
	return -1
}

// checkJSONText returns an error saying where data, a JSON text, holds
// what decoding would silently replace with U+FFFD: a byte that is not
// UTF-8, or a \u escape of an unpaired surrogate. Other malformations are
// left to the decoder.
func checkJSONText(data []byte) error {
	for i := 0; i < len(data); {
		c := data[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size == 1 {
				return fmt.Errorf("byte %d (0x%02x) is not valid UTF-8", i, c)
			}
			i += size
			continue
		}
		if c != '\\' || i+1 >= len(data) {
			i++
			continue
		}
		// An escape; only in strings, a syntax error elsewhere.
		r, ok := hexEscape(data[i:])
		switch {
		case !ok:
			i += 2 // \" \\ \n ...
		case !utf16.IsSurrogate(r):
			i += 6
		case r < 0xdc00: // a high surrogate: a low one must follow
			if lo, ok := hexEscape(data[i+6:]); ok && lo >= 0xdc00 && lo <= 0xdfff {
				i += 12
				continue
			}
			return fmt.Errorf("the escape %s at byte %d is a UTF-16 high surrogate without its low half", data[i:i+6], i)
		default:
			return fmt.Errorf("the escape %s at byte %d is a UTF-16 low surrogate without its high half", data[i:i+6], i)
		}
	}
	return nil
}

// hexEscape decodes the \uXXXX escape that b starts with, if it does.
func hexEscape(b []byte) (rune, bool) {
	if len(b) < 6 || b[0] != '\\' || b[1] != 'u' {
		return 0, false
	}
	var r rune
	for _, c := range b[2:6] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
