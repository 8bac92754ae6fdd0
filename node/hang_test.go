package node

import (
	"flag"
	"fmt"
	"os"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// TestMain stops a hung run a minute before go test's -timeout would,
// printing the goroutines in bulwark's and raft's code once per distinct
// stack. go test's own dump lists every goroutine with its arguments;
// cut short by a CI log, it showed neither the stuck test nor what it
// waited on when a leader's raft.Shutdown hung for eleven minutes.
func TestMain(m *testing.M) {
	flag.Parse()
	var watchdog *time.Timer
	if d := hangDeadline(); d > 0 {
		watchdog = time.AfterFunc(d, func() {
			fmt.Fprint(os.Stderr, hangReport(allStacks(), d))
			os.Exit(1)
		})
	}
	code := m.Run()
	if watchdog != nil {
		watchdog.Stop()
	}
	os.Exit(code)
}

// hangDeadline is a minute short of -test.timeout, or 0 when there is no
// timeout or it is too short to leave that minute, and for benchmark and
// fuzz runs, which go test does not time out either.
func hangDeadline() time.Duration {
	for _, name := range []string{"test.bench", "test.fuzz"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != "" {
			return 0
		}
	}
	f := flag.Lookup("test.timeout")
	if f == nil {
		return 0
	}
	timeout, err := time.ParseDuration(f.Value.String())
	if err != nil || timeout < 2*time.Minute {
		return 0
	}
	return timeout - time.Minute
}

func allStacks() string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return string(buf[:n])
		}
		buf = make([]byte, 2*len(buf))
	}
}

var goroutineHeader = regexp.MustCompile(`^goroutine \d+ (?:gp=\S+ m=\S+ (?:mp=\S+ )?)?\[(.*)\]:$`)

// Bounds on the report, so that a CI log keeps all of it.
const (
	maxHangGroups = 40
	maxHangFrames = 30
)

// hangReport groups the goroutines of a runtime.Stack(all) dump by their
// frames (function names, no arguments) and lists, most frequent first,
// those that pass through bulwark's or raft's code.
func hangReport(dump string, after time.Duration) string {
	type group struct {
		frames []string
		states map[string]int
		count  int
	}
	groups := map[string]*group{}
	var order []string
	for _, g := range strings.Split(strings.TrimSpace(dump), "\n\n") {
		lines := strings.Split(g, "\n")
		h := goroutineHeader.FindStringSubmatch(lines[0])
		if h == nil {
			continue
		}
		var frames []string
		ours := false
		for _, l := range lines[1:] {
			if strings.HasPrefix(l, "\t") || strings.HasPrefix(l, "created by ") {
				continue
			}
			fn := l
			if i := strings.LastIndex(l, "("); i > 0 && strings.HasSuffix(l, ")") {
				fn = l[:i] // the arguments: addresses that differ in every goroutine
			}
			if strings.Contains(fn, "bulwark-auth/bulwark") || strings.Contains(fn, "hashicorp/raft") {
				ours = true
			}
			if len(frames) < maxHangFrames {
				frames = append(frames, fn)
			}
		}
		if !ours || slices.Contains(frames, "github.com/bulwark-auth/bulwark/node.allStacks") {
			continue // not ours, or the watchdog itself
		}
		key := strings.Join(frames, "\n")
		gr, ok := groups[key]
		if !ok {
			gr = &group{frames: frames, states: map[string]int{}}
			groups[key] = gr
			order = append(order, key)
		}
		gr.count++
		gr.states[h[1]]++
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nhung: the node tests still ran after %v; their goroutines, by stack:\n", after.Round(time.Second))
	for shown := 0; len(order) > 0; shown++ {
		if shown == maxHangGroups {
			fmt.Fprintf(&b, "\n(%d more stacks)\n", len(order))
			break
		}
		best := 0
		for i, k := range order {
			if groups[k].count > groups[order[best]].count {
				best = i
			}
		}
		gr := groups[order[best]]
		order = append(order[:best], order[best+1:]...)
		states := make([]string, 0, len(gr.states))
		for s, n := range gr.states {
			states = append(states, fmt.Sprintf("%s ×%d", s, n))
		}
		sort.Strings(states)
		fmt.Fprintf(&b, "\n%d goroutine(s) [%s]:\n", gr.count, strings.Join(states, "; "))
		for _, f := range gr.frames {
			fmt.Fprintf(&b, "    %s\n", f)
		}
	}
	b.WriteString("FAIL (hung)\n")
	return b.String()
}

func TestHangReportGroupsOurStacks(t *testing.T) {
	dump := `goroutine 1520 [select, 8 minutes]:
github.com/hashicorp/raft.(*NetworkTransport).handleCommand(0xc0004689a0, 0xc002d31440, 0xc000f56500, 0xc00134f800)
	/root/go/pkg/mod/github.com/hashicorp/raft@v1.8.0/net_transport.go:744 +0x111d
created by github.com/hashicorp/raft.(*NetworkTransport).listen in goroutine 1398
	/root/go/pkg/mod/github.com/hashicorp/raft@v1.8.0/net_transport.go:597 +0x5ea

goroutine 1567 [select, 7 minutes]:
github.com/hashicorp/raft.(*NetworkTransport).handleCommand(0xc0004689a0, 0xc002954960, 0xc002923b80, 0xc002913680)
	/root/go/pkg/mod/github.com/hashicorp/raft@v1.8.0/net_transport.go:744 +0x111d
created by github.com/hashicorp/raft.(*NetworkTransport).listen in goroutine 1398
	/root/go/pkg/mod/github.com/hashicorp/raft@v1.8.0/net_transport.go:597 +0x5ea

goroutine 7 gp=0xc0001414a0 m=nil [sync.WaitGroup.Wait]:
sync.(*WaitGroup).Wait(0xc00292e5c8)
	/usr/local/go/src/sync/waitgroup.go:206 +0xc5
github.com/bulwark-auth/bulwark/node.(*Node).Close(...)
	/work/main/node/node.go:575
github.com/bulwark-auth/bulwark/node.TestThreeNodesOverMutualTLS(0xc001e38908)
	/work/main/node/transport_test.go:163 +0x80b

goroutine 3 [GC sweep wait]:
runtime.gopark(0x1, 0x0, 0x0, 0x0, 0x0)
	/usr/local/go/src/runtime/proc.go:462 +0xce
`
	got := hangReport(dump, 11*time.Minute)
	want := `
hung: the node tests still ran after 11m0s; their goroutines, by stack:

2 goroutine(s) [select, 7 minutes ×1; select, 8 minutes ×1]:
    github.com/hashicorp/raft.(*NetworkTransport).handleCommand

1 goroutine(s) [sync.WaitGroup.Wait ×1]:
    sync.(*WaitGroup).Wait
    github.com/bulwark-auth/bulwark/node.(*Node).Close
    github.com/bulwark-auth/bulwark/node.TestThreeNodesOverMutualTLS
FAIL (hung)
`
	if got != want {
		t.Fatalf("report:\n%s\nwant:\n%s", got, want)
	}
}

// TestHangReportOfThisProcess: the report of a live dump, taken as the
// watchdog takes it (on a goroutine of its own), names this test and
// leaves the goroutine taking it out.
func TestHangReportOfThisProcess(t *testing.T) {
	report := make(chan string)
	go func() { report <- hangReport(allStacks(), time.Minute) }()
	got := <-report
	if !strings.Contains(got, "node.TestHangReportOfThisProcess\n") {
		t.Fatalf("the report does not show this test's goroutine:\n%s", got)
	}
	if strings.Contains(got, "node.allStacks") {
		t.Fatalf("the report shows the goroutine that took it:\n%s", got)
	}
}

func TestHangDeadline(t *testing.T) {
	set := func(name, value string) {
		old := flag.Lookup(name).Value.String()
		if err := flag.Set(name, value); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { flag.Set(name, old) })
	}
	set("test.timeout", "12m")
	if got := hangDeadline(); got != 11*time.Minute {
		t.Fatalf("with -timeout 12m: %v, want 11m", got)
	}
	set("test.timeout", "90s")
	if got := hangDeadline(); got != 0 {
		t.Fatalf("with -timeout 90s: %v, want none", got)
	}
	set("test.timeout", "12m")
	set("test.bench", ".")
	if got := hangDeadline(); got != 0 {
		t.Fatalf("with -bench: %v, want none (go test does not time benchmarks out)", got)
	}
}
