package loopback

import (
	"net"
	"testing"
)

// TestPortNeverRepeats: every port handed out is distinct and bindable,
// although the kernel, asked afresh each time, repeats itself within a few
// hundred calls.
func TestPortNeverRepeats(t *testing.T) {
	seen := map[int]bool{}
	for range 500 {
		p := Port(t)
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
	l, err := net.Listen("tcp", Addr(t))
	if err != nil {
		t.Fatalf("the address Addr gave cannot be bound: %v", err)
	}
	l.Close()
}
