// Command syncserver is a minimal HTTP "sync server" that authenticates every request by
// calling auth-sidecar, the way a real integration does.
//
//	go run ./examples/syncserver -listen 127.0.0.1:8080 -sidecar 127.0.0.1:50051
//
// Each request's `Authorization: Bearer <token>` goes to the sidecar's Validate. The answers
// are the same as the Python and TypeScript examples', and as the sidecar's Envoy Check:
//
//   - no bearer token: 401, WWW-Authenticate: Bearer realm="auth-sidecar",
//     {"error":"missing_token","message":"Missing bearer token"}
//   - a refused token: 401, WWW-Authenticate: Bearer realm="auth-sidecar", error="invalid_token",
//     {"error":"invalid_token","message":"Expired token","reason":"REASON_EXPIRED"}
//   - an accepted one reaches the application handler, here one that answers 200 with the
//     user and path: {"user_id":"alice","path":"/v1/shape"}
//   - when the sidecar gives no decision (down, overloaded, too slow), the server fails closed
//     with 503: {"error":"auth_unavailable","message":"Auth sidecar unavailable"}
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	authsidecar "github.com/auth-sidecar/auth-sidecar/clients/go"
)

// realm names this server in WWW-Authenticate (the sidecar's default SIDECAR_ENVOY_REALM).
const realm = "auth-sidecar"

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "HTTP address to serve on")
	target := flag.String("sidecar", "127.0.0.1:50051", "auth-sidecar address: host:port or unix:/path")
	timeout := flag.Duration("timeout", authsidecar.DefaultTimeout, "deadline of each sidecar call")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *listen, *target, *timeout); err != nil {
		log.Fatal(err)
	}
}

// run serves until ctx ends, then shuts down gracefully.
func run(ctx context.Context, listen, target string, timeout time.Duration) error {
	client, err := authsidecar.Dial(target, authsidecar.WithTimeout(timeout))
	if err != nil {
		return err
	}
	defer client.Close()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	server := &http.Server{Handler: newHandler(client), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = server.Shutdown(shutdown)
	}()
	log.Printf("syncserver on http://%s, auth by the sidecar at %s", ln.Addr(), target)
	if err := server.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// newHandler is the whole server: every route is behind authenticate.
func newHandler(client *authsidecar.Client) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", whoami)
	return authenticate(client, mux)
}

type userKey struct{}

// userID returns the user that authenticate put in the request's context.
func userID(ctx context.Context) string {
	id, _ := ctx.Value(userKey{}).(string)
	return id
}

// authenticate lets a request through to next only if the sidecar accepts its bearer token,
// with the user id in its context.
func authenticate(client *authsidecar.Client, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token := bearer(r)
		if token == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+realm+`"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{
				"error":   "missing_token",
				"message": "Missing bearer token",
			})
			return
		}
		decision, err := client.Validate(r.Context(), token)
		if err != nil {
			log.Printf("auth sidecar: %v", err)
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{
				"error":   "auth_unavailable",
				"message": "Auth sidecar unavailable",
			})
			return
		}
		if !decision.Valid {
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+realm+`", error="invalid_token"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{
				"error":   "invalid_token",
				"message": decision.Message,
				"reason":  decision.Reason.String(),
			})
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, decision.UserID)))
	})
}

// bearer returns the token of an `Authorization: Bearer <token>` header, or "".
func bearer(r *http.Request) string {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

// whoami stands for the sync server's real work.
func whoami(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"user_id": userID(r.Context()), "path": r.URL.RequestURI()})
}

func writeJSON(w http.ResponseWriter, code int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}
