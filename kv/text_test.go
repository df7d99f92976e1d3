package kv

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestCheckJSONText(t *testing.T) {
	cases := []struct {
		body string
		bad  string // in the error; "" if the body passes
	}{
		{`{"value":"plain"}`, ""},
		{`{"value":"é 日本 😀"}`, ""},
		{"{\"value\":\"\uFFFD\"}", ""}, // a real U+FFFD is text
		{`{"value":"\ufffd"}`, ""},
		{`{"value":"\u00e9\u65e5"}`, ""},
		{`{"value":"\ud83d\ude00"}`, ""},     // a surrogate pair
		{`{"value":"\uD83D\uDE00"}`, ""},     // upper-case hex
		{`{"value":"\\ud800"}`, ""},          // an escaped backslash, then text
		{`{"value":"\"\\\/\b\f\n\r\t"}`, ""}, // the other escapes
		{`{"value":"\u12"}`, ""},             // malformed: the decoder's business
		{"{\"value\":\"\xff\"}", "byte 10 (0xff) is not valid UTF-8"},
		{"{\"value\":\"a\xc3\"}", "byte 11 (0xc3) is not valid UTF-8"},
		{"{\"value\":\"\xed\xa0\x80\"}", "byte 10 (0xed) is not valid UTF-8"}, // a surrogate in UTF-8
		{`{"value":"\ud800"}`, `\ud800 at byte 10 is a UTF-16 high surrogate without its low half`},
		{`{"value":"\ud800x"}`, "high surrogate without its low half"},
		{`{"value":"\ud800\u0041"}`, "high surrogate without its low half"},
		{`{"value":"\ud800\ud800"}`, "high surrogate without its low half"},
		{`{"value":"\udc00"}`, `\udc00 at byte 10 is a UTF-16 low surrogate without its high half`},
		{`{"value":"\\\udfff"}`, "low surrogate without its high half"},
	}
	for _, tc := range cases {
		err := checkJSONText([]byte(tc.body))
		switch {
		case tc.bad == "" && err != nil:
			t.Errorf("%q: %v; want no error", tc.body, err)
		case tc.bad != "" && (err == nil || !strings.Contains(err.Error(), tc.bad)):
			t.Errorf("%q: %v; want an error saying %q", tc.body, err, tc.bad)
		}
		// Whatever passes decodes without U+FFFD appearing from nowhere.
		var v struct{ Value string }
		if err == nil && json.Unmarshal([]byte(tc.body), &v) == nil &&
			strings.Count(v.Value, "\uFFFD") > strings.Count(tc.body, "\uFFFD")+strings.Count(strings.ToLower(tc.body), `\ufffd`) {
			t.Errorf("%q passes the check, but decodes to %q", tc.body, v.Value)
		}
	}
}

// TestHTTPRefusesNonUTF8: keys and values are text; what JSON or the
// path cannot carry unaltered is refused with 400, never stored altered.
func TestHTTPRefusesNonUTF8(t *testing.T) {
	c := newHTCluster(t, HTTPOptions{})
	l := c.leader()
	u := c.urls[l]
	refused := []struct{ name, method, path, body, say string }{
		{"key not UTF-8", "PUT", "/kv/a%FFb", `{"value":"x"}`, "key is not valid UTF-8 (byte 1)"},
		{"key not UTF-8, GET", "GET", "/kv/%C3", "", "key is not valid UTF-8 (byte 0)"},
		{"value not UTF-8", "PUT", "/kv/v1", "{\"value\":\"a\xffb\"}", "byte 11 (0xff) is not valid UTF-8"},
		{"append value not UTF-8", "POST", "/kv/v1/append", "{\"value\":\"\xc3\"}", "not valid UTF-8"},
		{"lone high surrogate", "PUT", "/kv/v2", `{"value":"\ud800"}`, "high surrogate"},
		{"lone low surrogate", "PUT", "/kv/v2", `{"value":"x\udfff"}`, "low surrogate"},
	}
	for _, tc := range refused {
		code, _, m := htDo(t, tc.method, u+tc.path, tc.body, nil)
		msg, _ := m["error"].(string)
		if code != 400 || m["code"] != CodeBadRequest || !strings.Contains(msg, tc.say) ||
			!strings.Contains(msg, "encode") {
			t.Errorf("%s: %d %v; want 400 saying %q and what to do", tc.name, code, m, tc.say)
		}
	}
	for _, key := range []string{"v1", "v2"} {
		if code, _, m := htDoSettled(t, "GET", u+"/kv/"+key, "", nil); code != 404 {
			t.Errorf("GET %s: %d %v; want 404: a refused request took effect", key, code, m)
		}
	}
	// Text outside the BMP, escaped or not, and U+FFFD itself, are kept.
	for key, body := range map[string]string{
		"pair":    `{"value":"\ud83d\ude00"}`,
		"raw":     `{"value":"😀 é"}`,
		"fffd":    "{\"value\":\"\uFFFD\"}",
		"slashed": `{"value":"\\ud800"}`,
	} {
		if code, _, m := htDoSettled(t, "PUT", u+"/kv/"+key, body, nil); code != 200 {
			t.Fatalf("PUT %s %s: %d %v", key, body, code, m)
		}
	}
	c.mustGet(u, "pair", "😀")
	c.mustGet(u, "raw", "😀 é")
	c.mustGet(u, "fffd", "\uFFFD")
	c.mustGet(u, "slashed", `\ud800`)

	// The Go client does not send what JSON would alter.
	conn := &HTTPConn{Addr: u}
	for _, op := range []Op{{Kind: Put, Key: "k", Value: "a\xff"}, {Kind: Get, Key: "\xfe"}} {
		if _, _, err := conn.Do(context.Background(), op); !errors.Is(err, ErrNotText) || !Refused(err) {
			t.Errorf("HTTPConn %s %q=%q: %v; want ErrNotText, a refusal", op.Kind, op.Key, op.Value, err)
		}
	}
	if code, _, m := htDoSettled(t, "GET", u+"/kv/k", "", nil); code != 404 {
		t.Errorf("GET k: %d %v; want 404", code, m)
	}
}
