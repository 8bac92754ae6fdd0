package main

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestLeanTransportKeepsAndDropsConnections(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/echo":
			b, _ := io.ReadAll(r.Body)
			w.Write(append([]byte(r.Method+" "), b...))
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		case "/close":
			w.Header().Set("Connection", "close")
			io.WriteString(w, "bye")
		case "/big":
			io.WriteString(w, strings.Repeat("x", 64<<10))
		default:
			http.Error(w, "nope", http.StatusNotFound)
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	defer srv.Close()
	cfg := &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
	addr := strings.TrimPrefix(srv.URL, "https://")
	tr := newLeanTransport(addr, cfg, 4, 5*time.Second)
	c := &http.Client{Transport: tr}
	defer c.CloseIdleConnections()

	get := func(path string, readAll bool) (int, string) {
		t.Helper()
		resp, err := c.Post(srv.URL+path, "text/plain", strings.NewReader("hello"))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		defer resp.Body.Close()
		if !readAll {
			return resp.StatusCode, ""
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%s: reading: %v", path, err)
		}
		return resp.StatusCode, string(b)
	}
	for i := range 5 {
		if code, body := get("/echo", true); code != 200 || body != "POST hello" {
			t.Fatalf("request %d: %d %q", i, code, body)
		}
	}
	if code, _ := get("/empty", true); code != http.StatusNoContent {
		t.Fatalf("/empty: %d", code)
	}
	if code, body := get("/missing", true); code != http.StatusNotFound || !strings.Contains(body, "nope") {
		t.Fatalf("/missing: %d %q", code, body)
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for 7 keep-alive requests, want 1", n)
	}
	// An answer asking to close, and one not read to its end, each cost
	// their connection: the next request dials.
	if code, body := get("/close", true); code != 200 || body != "bye" {
		t.Fatalf("/close: %d %q", code, body)
	}
	get("/echo", true)
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections after Connection: close, want 2", n)
	}
	get("/big", false)
	get("/echo", true)
	if n := conns.Load(); n != 3 {
		t.Fatalf("%d connections after an answer left unread, want 3", n)
	}
	// A kept connection the server closed meanwhile: the request is sent
	// again on a new one, body included.
	srv.CloseClientConnections()
	time.Sleep(10 * time.Millisecond)
	if code, body := get("/echo", true); code != 200 || body != "POST hello" {
		t.Fatalf("after the server closed the kept connection: %d %q", code, body)
	}
	if n := conns.Load(); n != 4 {
		t.Fatalf("%d connections after the server closed one, want 4", n)
	}
	if _, err := c.Get("https://example.invalid/"); err == nil {
		t.Fatal("a request for another host went through")
	}
}
