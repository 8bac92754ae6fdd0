package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"unicode/utf8"
)

// maxJSONDepth bounds the nesting of objects and arrays in a request body.
const maxJSONDepth = 32

// decodeJSON reads r's body into v, which should be a pointer to a struct,
// refusing anything a handler should not have to think about. The body
// must be labelled application/json (a charset parameter, if any, must be
// utf-8), be at most the surface's body limit, be valid UTF-8, hold exactly
// one JSON object nested at most maxJSONDepth deep, and name no field v
// lacks. Every refusal is an *Error for writeError; on error v may be
// partly filled and must not be used.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	if err := checkContentType(r.Header.Get("Content-Type")); err != nil {
		return err
	}
	limit := scopeOf(r).maxBody
	// MaxBytesReader tells the server to close the connection after an
	// oversized body, but only when it sees the server's own writer.
	for {
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			break
		}
		w = u.Unwrap()
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return &Error{Status: http.StatusRequestEntityTooLarge, Code: CodePayloadTooLarge,
				Description: fmt.Sprintf("request body is larger than %d bytes", limit)}
		}
		return badRequest("cannot read the request body")
	}
	return decodeBody(body, v)
}

// decodeBody is decodeJSON after the body is read and bounded.
func decodeBody(body []byte, v any) error {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	switch {
	case len(trimmed) == 0:
		return badRequest("request body is empty; want a JSON object")
	case !utf8.Valid(body):
		return badRequest("request body is not valid UTF-8")
	case trimmed[0] != '{':
		return badRequest("request body must be a JSON object")
	}
	if err := checkDepth(body, maxJSONDepth); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("request body has data after the JSON object")
	}
	return nil
}

// checkContentType accepts application/json with no parameter but an
// optional charset=utf-8.
func checkContentType(ct string) error {
	unsupported := &Error{Status: http.StatusUnsupportedMediaType, Code: CodeUnsupportedMediaType,
		Description: "request body must be application/json"}
	if ct == "" {
		return unsupported
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return unsupported
	}
	for k, val := range params {
		if k != "charset" || !strings.EqualFold(val, "utf-8") {
			return unsupported
		}
	}
	return nil
}

// checkDepth scans body for objects and arrays nested deeper than max,
// before the decoder (which would recurse) sees it. Brackets inside strings
// do not count. Malformed JSON is left for the decoder to report.
func checkDepth(body []byte, max int) error {
	depth, inString, escaped := 0, false, false
	for _, c := range body {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
			if depth > max {
				return badRequest(fmt.Sprintf("request body is nested more than %d levels deep", max))
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return nil
}

// jsonError turns a decoder error into a 400 that says what is wrong
// without quoting the body.
func jsonError(err error) *Error {
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		return badRequest(fmt.Sprintf("request body is not valid JSON (at byte %d)", se.Offset))
	}
	if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		if te.Field != "" {
			return badRequest(fmt.Sprintf("field %q must be %s", te.Field, jsonKind(te.Type.String())))
		}
		return badRequest("request body has the wrong type; want a JSON object")
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return badRequest("request body ends before the JSON object does")
	}
	// encoding/json reports an unknown field only as text: `json: unknown field "x"`.
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if len(name) > 66 { // the name is the client's; keep the answer small
			name = strings.ToValidUTF8(name[:64], "") + `…"`
		}
		return badRequest("unknown field " + name)
	}
	return badRequest("request body is not acceptable JSON")
}

// jsonKind names a Go type the way a JSON client thinks of it.
func jsonKind(goType string) string {
	switch {
	case goType == "string":
		return "a string"
	case goType == "bool":
		return "true or false"
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	case strings.HasPrefix(goType, "map[") || strings.HasPrefix(goType, "struct"):
		return "an object"
	case strings.Contains(goType, "int") || strings.HasPrefix(goType, "float"):
		return "a number"
	default:
		return "of another type"
	}
}
