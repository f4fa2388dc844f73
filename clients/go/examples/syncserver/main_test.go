package main

import (
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	authsidecar "github.com/auth-sidecar/auth-sidecar/clients/go"
	"github.com/auth-sidecar/auth-sidecar/clients/go/internal/sidecartest"
)

func get(t *testing.T, url, authorization string) (int, map[string]string, http.Header) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("body: %v", err)
	}
	return resp.StatusCode, body, resp.Header
}

// TestSyncServer runs the example's handler in-process against a live sidecar.
func TestSyncServer(t *testing.T) {
	s := sidecartest.Run(t, map[string]string{"AUTH_MODE": "insecure"})
	client, err := authsidecar.Dial(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server := httptest.NewServer(newHandler(client))
	defer server.Close()

	minted, err := client.Mint(t.Context(), "frank", authsidecar.WithTTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	const challenge = `Bearer realm="auth-sidecar", error="invalid_token"`
	missing := map[string]string{"error": "missing_token", "message": "Missing bearer token"}
	cases := []struct {
		name          string
		authorization string
		code          int
		body          map[string]string
		challenge     string
	}{
		{"valid", "Bearer " + sidecartest.Unsigned(map[string]any{"sub": "alice"}),
			200, map[string]string{"user_id": "alice", "path": "/v1/shape?table=items"}, ""},
		{"minted by the sidecar", "bearer " + minted.Token,
			200, map[string]string{"user_id": "frank", "path": "/v1/shape?table=items"}, ""},
		{"expired", "Bearer " + sidecartest.Unsigned(map[string]any{"sub": "bob", "exp": 1_000_000_000}),
			401, map[string]string{"error": "invalid_token", "reason": "REASON_EXPIRED", "message": "Expired token"}, challenge},
		{"no user", "Bearer " + sidecartest.Unsigned(map[string]any{"role": "admin"}),
			401, map[string]string{"error": "invalid_token", "reason": "REASON_INVALID_USER_ID", "message": "Missing or invalid 'user_id'"}, challenge},
		// The same answer as the sidecar's Envoy Check, and the Python and TypeScript examples.
		{"no header", "", 401, missing, `Bearer realm="auth-sidecar"`},
		{"not bearer", "Basic YWxpY2U6c2VjcmV0", 401, missing, `Bearer realm="auth-sidecar"`},
		{"empty bearer", "Bearer ", 401, missing, `Bearer realm="auth-sidecar"`},
	}
	for _, c := range cases {
		code, body, header := get(t, server.URL+"/v1/shape?table=items", c.authorization)
		if code != c.code || !maps.Equal(body, c.body) {
			t.Errorf("%s: got %d %v, want %d %v", c.name, code, body, c.code, c.body)
		}
		if got := header.Get("WWW-Authenticate"); got != c.challenge {
			t.Errorf("%s: WWW-Authenticate %q, want %q", c.name, got, c.challenge)
		}
	}
}

// TestSyncServerFailsClosed: with no sidecar to ask, requests get 503, never through.
func TestSyncServerFailsClosed(t *testing.T) {
	client, err := authsidecar.Dial(sidecartest.ClosedAddr(t), authsidecar.WithRetry(1, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server := httptest.NewServer(newHandler(client))
	defer server.Close()
	token := sidecartest.Unsigned(map[string]any{"sub": "alice"})
	code, body, _ := get(t, server.URL, "Bearer "+token)
	want := map[string]string{"error": "auth_unavailable", "message": "Auth sidecar unavailable"}
	if code != http.StatusServiceUnavailable || !maps.Equal(body, want) {
		t.Errorf("got %d %v, want 503 %v", code, body, want)
	}
}
