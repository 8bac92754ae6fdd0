package main

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/internal/waitfor"
	"github.com/bulwark-auth/bulwark/node/loopback"
)

// oauth2ProxyBuilt is where make oidc-interop leaves oauth2-proxy,
// relative to this package; once it is there, make test runs the test
// too (it takes well under a minute).
const oauth2ProxyBuilt = "../../bin/oauth2-proxy-v7.15.6"

// A relying party nobody here wrote: oauth2-proxy v7 (make oidc-interop
// builds it, outside bulwark's go.mod, and names it in
// BULWARK_OAUTH2_PROXY) with bulwark as its --provider=oidc, in front of
// an upstream that echoes the identity headers it receives. A browser
// (an HTTP client with a cookie jar) asking the proxy for a page is sent
// to bulwark's login form, signs in there, and reaches the upstream as
// the user; a browser without the proxy's cookie never does.
func TestInteropOAuth2Proxy(t *testing.T) {
	bin := os.Getenv("BULWARK_OAUTH2_PROXY")
	if _, err := os.Stat(oauth2ProxyBuilt); bin == "" && err == nil {
		bin = oauth2ProxyBuilt
	}
	if bin == "" {
		t.Skip("needs oauth2-proxy: run make oidc-interop once")
	}
	n := newTestNode(t)
	n.start()
	if _, e, code := n.cli("correct horse battery\n", "user", "add", "alice", "--email", "alice@example.com", "--password-stdin"); code != 0 {
		t.Fatal(e)
	}

	// The upstream: what reaches it, and as whom.
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"path": r.URL.Path, "user": r.Header.Get("X-Forwarded-User"),
			"email": r.Header.Get("X-Forwarded-Email"), "username": r.Header.Get("X-Forwarded-Preferred-Username")})
	}))
	defer upstream.Close()

	proxyPort := loopback.Port(t)
	proxy := fmt.Sprintf("http://127.0.0.1:%d", proxyPort)
	secret := n.addClientURI("oauth2-proxy", proxy+"/oauth2/callback")
	cookieSecret := make([]byte, 32)
	rand.Read(cookieSecret)
	logs := &lockedBuffer{}
	cmd := exec.Command(bin,
		"--provider=oidc", "--oidc-issuer-url="+n.url(""), "--provider-ca-file="+filepath.Join(n.dataDir(), "ca.pem"),
		"--client-id=oauth2-proxy", "--client-secret="+secret, "--redirect-url="+proxy+"/oauth2/callback",
		"--code-challenge-method=S256", "--scope=openid email profile", "--insecure-oidc-skip-nonce=false",
		// bulwark does not verify addresses: email_verified is false.
		"--insecure-oidc-allow-unverified-email=true", "--email-domain=*",
		"--upstream="+upstream.URL+"/", "--http-address=127.0.0.1:"+fmt.Sprint(proxyPort),
		"--cookie-secret="+base64.RawURLEncoding.EncodeToString(cookieSecret), "--cookie-secure=false",
		"--skip-provider-button=true")
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("oauth2-proxy logs:\n%s", logs)
		}
	})
	waitfor.True(t, "oauth2-proxy ready", 20*time.Second, 100*time.Millisecond, func() bool {
		resp, err := http.Get(proxy + "/ping")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})

	// A browser that trusts the cluster's CA and follows every redirect.
	pem, err := os.ReadFile(filepath.Join(n.dataDir(), "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	newBrowser := func() *http.Client {
		jar, _ := cookiejar.New(nil)
		return &http.Client{Jar: jar, Timeout: 10 * time.Second,
			Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	}
	get := func(c *http.Client, u string) (*http.Response, string) {
		t.Helper()
		resp, err := c.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}

	br := newBrowser()
	resp, page := get(br, proxy+"/private/page")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Request.URL.String(), n.url("/login")) || !strings.Contains(page, `name="password"`) {
		t.Fatalf("the proxy did not send the browser to bulwark's login form: %d %s %.300s", resp.StatusCode, resp.Request.URL, page)
	}
	form := fields(page)
	form.Set("username", "alice")
	form.Set("password", "correct horse battery")
	resp, err = br.PostForm(n.url("/login"), form)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var seen map[string]string
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Request.URL.String(), proxy) || json.Unmarshal(body, &seen) != nil {
		t.Fatalf("after signing in: %d at %s: %.300s", resp.StatusCode, resp.Request.URL, body)
	}
	if seen["path"] != "/private/page" || seen["email"] != "alice@example.com" || seen["username"] != "alice" || seen["user"] == "" {
		t.Fatalf("the upstream saw %v", seen)
	}
	// The proxy's session cookie keeps the browser in.
	if resp, body := get(br, proxy+"/again"); resp.StatusCode != 200 || !strings.Contains(body, `"email":"alice@example.com"`) {
		t.Fatalf("second request: %d %s", resp.StatusCode, body)
	}
	// A browser without it is sent to sign in, never to the upstream.
	if resp, page := get(newBrowser(), proxy+"/private/page"); !strings.HasPrefix(resp.Request.URL.String(), n.url("/login")) || strings.Contains(page, "alice@example.com") {
		t.Fatalf("a browser without the proxy's cookie: %d %s", resp.StatusCode, resp.Request.URL)
	}
}

// addClientURI registers a confidential client with one redirect URI and
// returns its secret.
func (n *testNode) addClientURI(name, redirect string) string {
	n.t.Helper()
	var out struct {
		Secret string `json:"client_secret"`
	}
	waitfor.True(n.t, "client add "+name, 10*time.Second, 100*time.Millisecond, func() bool {
		o, _, code := n.cli("", "client", "add", name, "--redirect-uri", redirect, "--json")
		return code == 0 && json.Unmarshal([]byte(o), &out) == nil
	})
	return out.Secret
}
