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
// not ask to close; anything else closes it. A request on a kept
// connection that the server closed meanwhile is sent again once, on a new
// one, when its body can be replayed. Each request is bounded by its
// context's deadline or else by timeout, set on the connection: the
// transport does the timing, since http.Client.Timeout would add a
// goroutine and a timer per request for any transport but its own.
type leanTransport struct {
	addr    string
	tls     *tls.Config
	idle    chan *leanConn
	timeout time.Duration
}

func newLeanTransport(addr string, cfg *tls.Config, conns int, timeout time.Duration) *leanTransport {
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"http/1.1"}
	return &leanTransport{addr: addr, tls: cfg, idle: make(chan *leanConn, conns), timeout: timeout}
}

// leanConn is one keep-alive connection, used by one request at a time.
type leanConn struct {
	c  *tls.Conn
	br *bufio.Reader
	bw *bufio.Writer
}

func (t *leanTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "https" || req.URL.Host != t.addr {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, errors.New("leanTransport: only https://" + t.addr)
	}
	deadline, ok := req.Context().Deadline()
	if !ok {
		deadline = time.Now().Add(t.timeout)
	}
	lc, reused, err := t.conn(req, deadline)
	if err == nil {
		var resp *http.Response
		resp, err = t.exchange(lc, req, deadline)
		if err == nil || !reused || (req.Body != nil && req.GetBody == nil) {
			return resp, err
		}
		// The server may have closed a kept connection: once more, on a
		// new one.
		if req.GetBody != nil {
			if req.Body, err = req.GetBody(); err != nil {
				return nil, err
			}
		}
		if lc, err = t.dial(req, deadline); err == nil {
			return t.exchange(lc, req, deadline)
		}
	}
	if req.Body != nil {
		req.Body.Close()
	}
	return nil, err
}

// exchange sends req on lc and reads the answer's head; on error lc is
// closed.
func (t *leanTransport) exchange(lc *leanConn, req *http.Request, deadline time.Time) (*http.Response, error) {
	lc.c.SetDeadline(deadline)
	err := req.Write(lc.bw)
	if err == nil {
		err = lc.bw.Flush()
	}
	var resp *http.Response
	if err == nil {
		resp, err = http.ReadResponse(lc.br, req)
	}
	if err != nil {
		lc.c.Close()
		return nil, err
	}
	state := lc.c.ConnectionState()
	resp.TLS = &state
	resp.Body = &leanBody{r: resp.Body, t: t, lc: lc, keep: !resp.Close}
	return resp, nil
}

// conn returns an idle connection (reused), or dials one.
func (t *leanTransport) conn(req *http.Request, deadline time.Time) (lc *leanConn, reused bool, err error) {
	select {
	case lc := <-t.idle:
		return lc, true, nil
	default:
	}
	lc, err = t.dial(req, deadline)
	return lc, false, err
}

func (t *leanTransport) dial(req *http.Request, deadline time.Time) (*leanConn, error) {
	d := tls.Dialer{NetDialer: &net.Dialer{Deadline: deadline}, Config: t.tls}
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
	if !b.keep || !b.eof {
		// Not kept: close first, so that the body is not drained.
		err := b.lc.c.Close()
		b.r.Close()
		return err
	}
	if err := b.r.Close(); err != nil {
		return b.lc.c.Close()
	}
	select {
	case b.t.idle <- b.lc:
	default:
		b.lc.c.Close()
	}
	return nil
}
