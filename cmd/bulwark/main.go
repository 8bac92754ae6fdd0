// Command bulwark is the one binary of the bulwark authentication service:
// `bulwark serve` runs a node, and the other subcommands administer the
// local node over its admin Unix socket.
//
// This is the only place concrete types are wired together: the sealer,
// keystore, TLS material, Raft node, authentication core and HTTP servers
// are built here and handed to one another, and the node's background
// work is started by name in serve. Flag parsing, config and wiring, and
// nothing else: no replicated command is built here and no Raft or bbolt
// file opened (node, authcore and node/escrow own those protocols;
// layering_test.go holds this package to it). Nothing imports this
// package.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes: 0 success, 1 failure (one-line reason on stderr), 2 usage.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// usageError marks a mistake in the command line: exit code 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

const usage = `usage: bulwark <command> [arguments]

  serve [--config FILE] [--data-dir DIR] [--dev] [--join TOKEN]
  user add NAME [--admin] [--email E] --password-stdin
  user list | show NAME | disable NAME | enable NAME | delete NAME | unlock NAME
  user revoke-sessions NAME
  user reset-mfa NAME | unflag NAME
  user export NAME                  everything held about the user, as JSON (no secrets)
  user erase NAME                   delete the user and pseudonymise their audit entries
  client add NAME --redirect-uri URI [--redirect-uri URI…] [--public] [--id-token-alg ES256|EdDSA|RS256] [--consent] | list | remove NAME
  incident lockdown --reason TEXT | release | status
  audit tail [-n N] | verify [--data-dir DIR | --backup FILE] | export [--since SEQ]
  keys list | rotate | datakey-fingerprint
  keys escrow-keygen PRIVATE_OUT PUBLIC_OUT | escrow-key FILE
  keys recovery-shares --threshold K --shares N
  keys recover [--data-dir DIR] (--escrow-private-key FILE | --share S ...)   (daemon stopped)
  cluster status | join-token [--ttl 1h] | remove NODE | renew-cert
  backup create FILE [--force] | restore FILE [--data-dir DIR]   (restore: daemon stopped)
  blocklist list | add IP/CIDR [--for 1h] [--reason TEXT] | remove IP/CIDR
  doctor [--json]   (the hardening scorecard; exit 1 when a control fails)
  version

Admin commands reach the local daemon over its admin socket, found from
--socket PATH, or --config FILE, or /etc/bulwark/bulwark.toml. Read commands
take --json.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// spareProcs gives the daemon two more Ps than the runtime's default. Go
// keeps a goroutine's P through a blocking syscall until sysmon takes it
// back, 20 µs to 10 ms later, and the Raft log's fdatasync holds one at
// every commit. During a login flood the password hash threads (one per
// core, see authcore.WithHashThreads) hold a P each, so the rest of the
// daemon runs on the spare ones.
//
// With one spare (the first step, which made refreshes at concurrency 256
// faster in each of 4 A/B runs: 4,878/2,880, 4,264/3,769, 4,440/3,722 and
// 4,405/4,218 per second), an fdatasync left nothing else a P: sysmon
// retook it at every commit, and each retake sets sysmon polling every
// 20 µs again, a wake-up on the hash threads' cores each time (strace at
// c=16 logins: 43 nanosleep calls per login; 20 with two spares). With
// two, in alternating 4 s runs against the same binary, logins at c=16
// were 2.9% faster for 3.8% less node CPU per login (medians of 12
// pairs); with four spares no faster than two, for 5% more CPU per
// login. GOMAXPROCS in the environment still wins.
func spareProcs() {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + 2)
	}
}

// run executes one command line and returns the exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	var err error
	switch args[0] {
	case "serve":
		err = cmdServe(args[1:], stderr)
	case "user":
		err = cmdUser(args[1:], stdin, stdout)
	case "client":
		err = cmdClient(args[1:], stdout)
	case "audit":
		err = cmdAudit(args[1:], stdout)
	case "keys":
		err = cmdKeys(args[1:], stdout)
	case "cluster":
		err = cmdCluster(args[1:], stdout)
	case "backup":
		err = cmdBackup(args[1:], stdout)
	case "incident":
		err = cmdIncident(args[1:], stdout)
	case "blocklist":
		err = cmdBlocklist(args[1:], stdout)
	case "doctor":
		err = cmdDoctor(args[1:], stdout)
	case "version", "--version", "-v":
		fmt.Fprintf(stdout, "bulwark %s\n", buildVersion())
	case "help", "--help", "-h":
		fmt.Fprint(stdout, usage)
	default:
		err = usagef("unknown command %q", args[0])
	}
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "bulwark: %s\n\n%s", ue.msg, usage)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "bulwark: %s\n", oneLine(err.Error()))
		return exitFailure
	}
}

// oneLine keeps a failure's reason on one line, as scripts expect.
func oneLine(s string) string {
	out := []rune{}
	for _, r := range s {
		if r == '\n' || r == '\r' {
			r = ' '
		}
		out = append(out, r)
	}
	return string(out)
}
