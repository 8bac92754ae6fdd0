// Package api is bulwark's HTTP surface: the JSON API over TLS (routing,
// handlers, middleware for security headers, request ids, logging, body
// limits and panic recovery; the OIDC endpoints; the sign-in and account
// pages, pages.go, login.go, account.go),
// the Prometheus metrics endpoint (metrics.go: request metrics counted by
// the middleware, security events by authcore's observer, gauges read at
// scrape time) and the local admin Unix socket with its client.
//
// Errors have one shape on every surface, {"error": code,
// "error_description": text}, written by one function, writeError, from one
// value type, *Error. Request bodies are read by one function, decodeJSON,
// which bounds and validates them before any handler sees a field.
//
// api may import authcore (its types and sentinel errors) and the standard
// library (and client_golang for the metrics); what it calls on other
// layers it declares here as small interfaces (UserAdmin, Auth, Readiness,
// AuthStats, BlockedAddresses), which cmd/bulwark satisfies with the
// concrete auth service and node. It never imports node, fsm, tpm, bbolt,
// raft or cmd (layering_test.go, at the module root, checks). Errors from below reach it wrapped:
// authcore's sentinels are mapped to their codes, Options.IsNoLeader
// teaches it which errors mean 503 no_leader, and anything else is a 500
// whose detail goes to the log, never to the client. Nothing imports api
// but cmd/bulwark.
package api
