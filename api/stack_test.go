package api

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
	"unsafe"
)

// TestHTTP2HandlersRunOnGrownStack: net/http's HTTP/2 server runs each
// request on a fresh goroutine with a small stack, and the middleware
// grows it while it is still shallow (growStack), so a handler that needs
// a few KiB of stack (as /v1/me's token check does, inside a bbolt read)
// does not make the runtime copy the stack again deep in the chain. A
// handler notes the address of one of its locals, uses 3 KiB of stack,
// and looks again: had the stack been copied, the local would have moved.
func TestHTTP2HandlersRunOnGrownStack(t *testing.T) {
	const requests = 20
	moved := make(chan bool, requests)
	h := newRouter(Options{}, func(mux *http.ServeMux) {
		mux.HandleFunc("GET /deep", func(w http.ResponseWriter, r *http.Request) {
			var local byte
			p := &local
			before := uintptr(unsafe.Pointer(p))
			useStack(3 << 10)
			moved <- uintptr(unsafe.Pointer(p)) != before
		})
	})
	srv := httptest.NewUnstartedServer(h)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	c := srv.Client()
	c.Timeout = 10 * time.Second
	copies := 0
	for range requests {
		resp, err := c.Get(srv.URL + "/deep")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s %d, want HTTP/2 200", resp.Proto, resp.StatusCode)
		}
		if <-moved {
			copies++
		}
	}
	if copies > 0 {
		t.Errorf("the stack was copied inside %d of %d HTTP/2 handlers: it was not grown before them", copies, requests)
	}
}

// useStack uses about n bytes of stack, 512 bytes a frame.
//
//go:noinline
func useStack(n int) byte {
	var buf [512]byte
	buf[n%len(buf)] = byte(n)
	if n <= len(buf) {
		return buf[0]
	}
	return useStack(n-len(buf)) + buf[n%len(buf)]
}
