package authsidecar_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	authsidecar "github.com/auth-sidecar/auth-sidecar/clients/go"
	"github.com/auth-sidecar/auth-sidecar/clients/go/internal/sidecartest"
)

// vectorFile is tests/vectors/vectors.json, the conformance vectors that the Python, Go and
// TypeScript clients all run against live sidecars.
type vectorFile struct {
	Configs map[string]map[string]string `json:"configs"`
	Vectors []vector                     `json:"vectors"`
}

type vector struct {
	Name   string `json:"name"`
	Config string `json:"config"`
	Token  string `json:"token"`
	Expect struct {
		// Pointers, so that a vector missing a field fails instead of expecting a zero value.
		Valid   *bool   `json:"valid"`
		UserID  *string `json:"user_id"`
		Reason  *string `json:"reason"`
		Message *string `json:"message"`
	} `json:"expect"`
}

func loadVectors(t *testing.T) vectorFile {
	t.Helper()
	root, err := sidecartest.Root()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(root, "tests", "vectors", "vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var file vectorFile
	if err := json.Unmarshal(raw, &file); err != nil {
		t.Fatalf("vectors.json: %v", err)
	}
	if len(file.Vectors) == 0 || len(file.Configs) == 0 {
		t.Fatalf("vectors.json has %d vectors and %d configs", len(file.Vectors), len(file.Configs))
	}
	for _, v := range file.Vectors {
		e := v.Expect
		if e.Valid == nil || e.UserID == nil || e.Reason == nil || e.Message == nil {
			t.Fatalf("vector %q: expect needs valid, user_id, reason and message", v.Name)
		}
		if _, ok := file.Configs[v.Config]; !ok {
			t.Fatalf("vector %q: no config %q", v.Name, v.Config)
		}
	}
	return file
}

// startAll starts one sidecar per config, all at once, and stops them all when t ends.
func startAll(t *testing.T, configs map[string]map[string]string) map[string]*authsidecar.Client {
	t.Helper()
	var (
		mu       sync.Mutex
		sidecars = map[string]*sidecartest.Sidecar{}
		errs     []error
		wg       sync.WaitGroup
	)
	for name, env := range configs {
		wg.Go(func() {
			s, err := startConfig(env)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			sidecars[name] = s
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for name, s := range sidecars {
			wg.Go(func() {
				if err := s.Stop(); err != nil {
					t.Errorf("config %s: %v", name, err)
				}
			})
		}
		wg.Wait()
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	clients := make(map[string]*authsidecar.Client, len(sidecars))
	for name, s := range sidecars {
		clients[name] = dial(t, s.Addr)
	}
	return clients
}

func startConfig(env map[string]string) (*sidecartest.Sidecar, error) {
	abs, err := sidecartest.Absolute(env)
	if err != nil {
		return nil, err
	}
	return sidecartest.Start(abs)
}

// TestVectors runs every shared conformance vector against a live sidecar with the vector's
// config, and compares valid, user_id, reason and message.
func TestVectors(t *testing.T) {
	t.Parallel()
	file := loadVectors(t)
	clients := startAll(t, file.Configs)
	ran := 0
	for _, v := range file.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			got, err := clients[v.Config].Validate(t.Context(), v.Token)
			if err != nil {
				t.Fatalf("vector %q: Validate: %v", v.Name, err)
			}
			ran++
			want := v.Expect
			if got.Valid != *want.Valid || got.UserID != *want.UserID ||
				got.Reason.String() != *want.Reason || got.Message != *want.Message {
				t.Errorf("vector %q (config %s):\n got valid=%v user_id=%q reason=%s message=%q\n"+
					"want valid=%v user_id=%q reason=%s message=%q", v.Name, v.Config,
					got.Valid, got.UserID, got.Reason, got.Message,
					*want.Valid, *want.UserID, *want.Reason, *want.Message)
			}
		})
	}
	if ran != len(file.Vectors) {
		t.Errorf("ran %d vectors, but vectors.json has %d", ran, len(file.Vectors))
	}
	t.Logf("ran %d of %d vectors against %d live sidecars", ran, len(file.Vectors), len(clients))
}
