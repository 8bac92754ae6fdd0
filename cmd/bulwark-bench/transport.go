package main

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"time"
)

// leanTransport is the benchmark's http.RoundTripper: HTTP/1.1 over TLS,
// each request on the calling goroutine. It writes the request with
// (*http.Request).Write and reads the answer with http.ReadResponse, the
// standard library's own HTTP/1.1 code, on a keep-alive connection taken
// from an idle pool. http.Transport instead runs two goroutines per
// connection and passes every request and answer between them, which
// costs the client wake-ups and CPU on the very cores the node is measured
// on: at /v1/me, c=64, the client took 0.8 of the 2 cores.
//
// It keeps a connection only when the answer was read to its end and did
// not ask to close; anything else closes it.
type leanTransport struct {
	addr string
	tls  *tls.Config
	idle chan *leanConn
}

func newLeanTransport(addr string, cfg *tls.Config, conns int) *leanTransport {
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"http/1.1"}
	return &leanTransport{addr: addr, tls: cfg, idle: make(chan *leanConn, conns)}
}

// leanConn is one keep-alive connection, used by one request at a time.
type leanConn struct {
	c  *tls.Conn
	br *bufio.Reader
	bw *bufio.Writer
}

func (t *leanTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "https" || req.URL.Host != t.addr {
		return nil, errors.New("leanTransport: only https://" + t.addr)
	}
	lc, err := t.conn(req)
	if err != nil {
		return nil, err
	}
	deadline, _ := req.Context().Deadline() // zero: none
	lc.c.SetDeadline(deadline)
	if err := req.Write(lc.bw); err != nil {
		lc.c.Close()
		return nil, err
	}
	if err := lc.bw.Flush(); err != nil {
		lc.c.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(lc.br, req)
	if err != nil {
		lc.c.Close()
		return nil, err
	}
	state := lc.c.ConnectionState()
	resp.TLS = &state
	resp.Body = &leanBody{r: resp.Body, t: t, lc: lc, keep: !resp.Close}
	return resp, nil
}

// conn returns an idle connection, or dials one.
func (t *leanTransport) conn(req *http.Request) (*leanConn, error) {
	select {
	case lc := <-t.idle:
		return lc, nil
	default:
	}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: t.tls}
	c, err := d.DialContext(req.Context(), "tcp", t.addr)
	if err != nil {
		return nil, err
	}
	tc := c.(*tls.Conn)
	return &leanConn{c: tc, br: bufio.NewReader(tc), bw: bufio.NewWriter(tc)}, nil
}

// CloseIdleConnections closes the pooled connections.
func (t *leanTransport) CloseIdleConnections() {
	for {
		select {
		case lc := <-t.idle:
			lc.c.Close()
		default:
			return
		}
	}
}

// leanBody returns its connection to the pool once read to the end and
// closed.
type leanBody struct {
	r    io.ReadCloser
	t    *leanTransport
	lc   *leanConn
	keep bool
	eof  bool
	done bool
}

func (b *leanBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	switch {
	case err == io.EOF:
		b.eof = true
	case err != nil:
		b.keep = false
	}
	return n, err
}

func (b *leanBody) Close() error {
	if b.done {
		return nil
	}
	b.done = true
	err := b.r.Close()
	if !b.keep || !b.eof || err != nil {
		return b.lc.c.Close()
	}
	select {
	case b.t.idle <- b.lc:
	default:
		b.lc.c.Close()
	}
	return nil
}
