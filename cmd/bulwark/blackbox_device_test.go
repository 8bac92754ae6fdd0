package main

import (
	"net/http"
	"testing"
)

// TestBlackBoxDeviceTokenDuringLockout: the owner's device logs in while
// failures from other addresses hold the name locked, on another node;
// another name's device token does not help (X-Forwarded-For from a
// trusted loopback proxy gives the attacker and the owner their
// addresses).
func TestBlackBoxDeviceTokenDuringLockout(t *testing.T) {
	nodes := formCluster(t, "api.trusted_proxies = [\"127.0.0.0/8\"]\n"+exemptLoopback)
	nodes[0].addUser("ivy", clusterPassword, false)
	nodes[0].addUser("joe", clusterPassword, false)
	from := func(n *testNode, ip string, body map[string]string) (int, map[string]any) {
		t.Helper()
		return n.apiCallHeaders("POST", "/v1/auth/login", http.Header{"X-Forwarded-For": {ip}}, body)
	}
	c, ivy := from(nodes[0], "192.0.2.10", map[string]string{"username": "ivy", "password": clusterPassword})
	_, joe := from(nodes[0], "192.0.2.11", map[string]string{"username": "joe", "password": clusterPassword})
	dev, _ := ivy["device_token"].(string)
	if c != 200 || dev == "" {
		t.Fatalf("login: %d %v", c, ivy)
	}
	for range 5 {
		from(nodes[1], "203.0.113.66", map[string]string{"username": "ivy", "password": "an attacker's guess"})
	}
	if c, out := from(nodes[2], "192.0.2.10", map[string]string{"username": "ivy", "password": clusterPassword}); c != 429 {
		t.Fatalf("the owner without the token: %d %v", c, out)
	}
	if c, out := from(nodes[2], "192.0.2.10", map[string]string{"username": "ivy", "password": clusterPassword,
		"device_token": joe["device_token"].(string)}); c != 429 {
		t.Fatalf("with joe's device token: %d %v", c, out)
	}
	if c, out := from(nodes[2], "192.0.2.10", map[string]string{"username": "ivy", "password": clusterPassword, "device_token": dev}); c != 200 {
		t.Fatalf("the owner's device during the lock: %d %v", c, out)
	}
}
