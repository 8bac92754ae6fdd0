package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"
)

func nested(depth int) string {
	return `{"username":"a","password":"p","roles":` + strings.Repeat("[", depth-1) + strings.Repeat("]", depth-1) + `}`
}

// TestDecodeRefusals: every bad body is refused with its own 4xx before
// the handler calls the auth service.
func TestDecodeRefusals(t *testing.T) {
	const good = `{"username":"alice","password":"long enough"}`
	tests := []struct {
		name, contentType, body string
		status                  int
		code, desc              string
	}{
		{"no content type", "", good, 415, CodeUnsupportedMediaType, "application/json"},
		{"form", "application/x-www-form-urlencoded", "username=alice", 415, CodeUnsupportedMediaType, ""},
		{"text", "text/plain", good, 415, CodeUnsupportedMediaType, ""},
		{"json lookalike", "application/jsonx", good, 415, CodeUnsupportedMediaType, ""},
		{"other charset", "application/json; charset=latin1", good, 415, CodeUnsupportedMediaType, ""},
		{"unknown parameter", "application/json; foo=bar", good, 415, CodeUnsupportedMediaType, ""},
		{"malformed media type", "application/json; charset", good, 415, CodeUnsupportedMediaType, ""},
		{"too large", "application/json", `{"username":"` + strings.Repeat("a", 70<<10) + `"}`, 413, CodePayloadTooLarge, "65536"},
		{"empty", "application/json", "", 400, CodeInvalidRequest, "empty"},
		{"only white space", "application/json", " \n\t ", 400, CodeInvalidRequest, "empty"},
		{"unknown field", "application/json", `{"username":"a","password":"p","admin":true}`, 400, CodeInvalidRequest, `unknown field "admin"`},
		{"long unknown field", "application/json", `{"` + strings.Repeat("x", 1000) + `":1}`, 400, CodeInvalidRequest, "unknown field"},
		{"trailing object", "application/json", good + `{}`, 400, CodeInvalidRequest, "after the JSON object"},
		{"trailing garbage", "application/json", good + ` x`, 400, CodeInvalidRequest, "after the JSON object"},
		{"bad UTF-8", "application/json", "{\"username\":\"al\xffice\",\"password\":\"p\"}", 400, CodeInvalidRequest, "UTF-8"},
		{"too deep", "application/json", nested(33), 400, CodeInvalidRequest, "nested"},
		{"array", "application/json", `[1,2]`, 400, CodeInvalidRequest, "JSON object"},
		{"null", "application/json", `null`, 400, CodeInvalidRequest, "JSON object"},
		{"syntax", "application/json", `{"username":}`, 400, CodeInvalidRequest, "not valid JSON"},
		{"truncated", "application/json", `{"username":"a"`, 400, CodeInvalidRequest, "ends before"},
		{"wrong type", "application/json", `{"username":5}`, 400, CodeInvalidRequest, `"username" must be a string`},
		{"wrong element type", "application/json", `{"roles":"admin"}`, 400, CodeInvalidRequest, `"roles" must be an array`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logger, _ := newTestLogger(t)
			users := newFakeUsers()
			h := NewAdminHandler(users, nil, nil, logger)
			rec := do(t, h, "POST", "/admin/v1/users", tt.contentType, tt.body)
			eb := checkError(t, rec, tt.status, tt.code)
			checkSecurityHeaders(t, rec.Header())
			if !strings.Contains(eb.Description, tt.desc) {
				t.Errorf("description %q, want it to contain %q", eb.Description, tt.desc)
			}
			if len(eb.Description) > 200 {
				t.Errorf("description is %d bytes long", len(eb.Description))
			}
			if n := users.callCount(); n != 0 {
				t.Errorf("refused request reached the auth service (%d calls)", n)
			}
		})
	}
}

// TestDecodeAccepts: what clients legitimately send gets through.
func TestDecodeAccepts(t *testing.T) {
	tests := []struct{ name, contentType, body string }{
		{"plain", "application/json", `{"username":"alice","password":"long enough"}`},
		{"charset", "application/json; charset=utf-8", `{"username":"alice","password":"long enough"}`},
		{"charset upper case", "Application/JSON; Charset=UTF-8", `{"username":"alice","password":"long enough"}`},
		{"white space around", "application/json", "\n {\"username\":\"alice\",\"password\":\"long enough\"} \n"},
		{"brackets in strings", "application/json", `{"username":"alice","password":"` + strings.Repeat("[{", 40) + `\"x"}`},
		{"unicode", "application/json", `{"username":"zoë","password":"long enough ✓"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logger, _ := newTestLogger(t)
			users := newFakeUsers()
			h := NewAdminHandler(users, nil, nil, logger)
			rec := do(t, h, "POST", "/admin/v1/users", tt.contentType, tt.body)
			// The fake refuses short passwords and non-list roles with its own
			// errors; what matters is that decoding let the request through.
			if users.callCount() != 1 {
				t.Errorf("request did not reach the auth service: %d %s", rec.Code, rec.Body)
			}
		})
	}
}

// TestDepthLimit: 32 levels are fine, 33 are not, counting the outer object.
func TestDepthLimit(t *testing.T) {
	var v map[string]any
	if err := decodeBody([]byte(nested(32)), &v); err != nil {
		t.Errorf("depth 32: %v", err)
	}
	if err := decodeBody([]byte(nested(33)), &v); err == nil || !strings.Contains(err.Error(), "nested") {
		t.Errorf("depth 33: %v, want a refusal", err)
	}
	// A million brackets are refused by the scan, not by recursion.
	if err := decodeBody([]byte(`{"a":`+strings.Repeat("[", 1<<20)), &v); err == nil || !strings.Contains(err.Error(), "nested") {
		t.Errorf("deep body: %v", err)
	}
}

// TestBodyLimitFromOptions: MaxBodyBytes is the limit on the API surface.
func TestBodyLimitFromOptions(t *testing.T) {
	logger, _ := newTestLogger(t)
	var reached bool
	h := newRouter(Options{Logger: logger, MaxBodyBytes: 100}, func(mux *http.ServeMux) {
		mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
			var v struct{ S string }
			if err := decodeJSON(w, r, &v); err != nil {
				writeError(w, r, err)
				return
			}
			reached = true
			writeJSON(w, r, 200, v)
		})
	})
	rec := do(t, h, "POST", "/echo", "application/json", `{"S":"`+strings.Repeat("a", 100)+`"}`)
	checkError(t, rec, 413, CodePayloadTooLarge)
	checkSecurityHeaders(t, rec.Header())
	if reached {
		t.Error("oversized body reached the handler")
	}
	if rec := do(t, h, "POST", "/echo", "application/json", `{"S":"short"}`); rec.Code != 200 {
		t.Errorf("small body: %d %s", rec.Code, rec.Body)
	}
}

// FuzzDecodeBody: no input panics the decoder, and whatever it accepts is
// a single valid, shallow, UTF-8 JSON object.
func FuzzDecodeBody(f *testing.F) {
	for _, s := range []string{`{}`, `{"username":"a","password":"b","roles":["x"]}`, `[`, `{"a":"\"[["}`,
		nested(33), "{\"username\":\"\xff\"}", `{} {}`, `{"email":null}`, ` `} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req createUserRequest
		if err := decodeBody(body, &req); err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("refusal %T is not an *Error", err)
			}
			return
		}
		if !utf8.Valid(body) || !json.Valid(body) || !bytes.HasPrefix(bytes.TrimSpace(body), []byte("{")) {
			t.Fatalf("accepted %q", body)
		}
		if checkDepth(body, maxJSONDepth) != nil {
			t.Fatalf("accepted a body nested too deep: %q", body)
		}
	})
}
