// Package sidecartest starts real auth-sidecar processes for this module's tests.
//
// A sidecar is `$SIDECAR_PYTHON -m sidecar serve` (default: the repository's .venv/bin/python),
// run from the repository root with this process's environment, minus every AUTH_ and SIDECAR_
// variable, plus the given ones. It listens on 127.0.0.1:0 unless SIDECAR_LISTEN is given, and
// `serve --ready-file` tells the bound address: Start polls for that file, giving up as soon as
// the process exits, while a goroutine drains stderr into the log. Stop sends SIGTERM and
// expects a clean exit.
package sidecartest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// modulePath identifies clients/go's go.mod when looking for the repository.
const modulePath = "module github.com/auth-sidecar/auth-sidecar/clients/go"

// StartTimeout bounds how long a sidecar may take to write its ready file.
const StartTimeout = 30 * time.Second

// StopTimeout bounds how long a sidecar may take to drain and exit after SIGTERM.
const StopTimeout = 15 * time.Second

// pollInterval is how often Start looks for the ready file.
const pollInterval = 10 * time.Millisecond

// Root returns the repository root: two levels up from clients/go, the directory of the
// go.mod found by walking up from the working directory (the test's package directory).
var Root = sync.OnceValues(func() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil &&
			bytes.Contains(data, []byte(modulePath+"\n")) {
			return filepath.Clean(filepath.Join(dir, "..", "..")), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("sidecartest: no clients/go/go.mod above the working directory")
		}
		dir = parent
	}
})

// Python returns the interpreter that runs the sidecar: $SIDECAR_PYTHON, or else
// <root>/.venv/bin/python.
func Python() (string, error) {
	python := os.Getenv("SIDECAR_PYTHON")
	if python == "" {
		root, err := Root()
		if err != nil {
			return "", err
		}
		python = filepath.Join(root, ".venv", "bin", "python")
	}
	path, err := exec.LookPath(python)
	if err != nil {
		return "", fmt.Errorf("sidecartest: no Python with the sidecar at %s (set SIDECAR_PYTHON, "+
			"or run scripts/setup to make .venv): %w", python, err)
	}
	return path, nil
}

// Absolute returns env with every *_FILE value that is a relative path made absolute against
// the repository root, as the conformance vectors' configs need.
func Absolute(env map[string]string) (map[string]string, error) {
	root, err := Root()
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(env))
	for key, value := range env {
		if strings.HasSuffix(key, "_FILE") && !filepath.IsAbs(value) {
			value = filepath.Join(root, value)
		}
		out[key] = value
	}
	return out, nil
}

// Environ returns this process's environment without any AUTH_ or SIDECAR_ variable, plus env.
func Environ(env map[string]string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AUTH_") && !strings.HasPrefix(kv, "SIDECAR_") {
			out = append(out, kv)
		}
	}
	for key, value := range env {
		out = append(out, key+"="+value)
	}
	return out
}

// Sidecar is a running `sidecar serve` process.
type Sidecar struct {
	// Addr is the address the sidecar says it bound: "127.0.0.1:<port>" or "unix:<path>",
	// usable as a client target as it is.
	Addr string

	cmd     *exec.Cmd
	drained chan struct{} // closed once stderr reaches EOF

	mu  sync.Mutex
	log []string

	stopOnce sync.Once
	stopErr  error
}

// Start starts a sidecar with env (AUTH_*/SIDECAR_* variables) and returns once it has written
// its ready file, which it does only once it serves.
func Start(env map[string]string) (*Sidecar, error) {
	root, err := Root()
	if err != nil {
		return nil, err
	}
	python, err := Python()
	if err != nil {
		return nil, err
	}
	if _, ok := env["SIDECAR_LISTEN"]; !ok {
		env = mergeListen(env, "127.0.0.1:0")
	}
	dir, err := os.MkdirTemp("", "sc-ready-")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	ready := filepath.Join(dir, "address")
	cmd := exec.Command(python, "-m", "sidecar", "serve", "--ready-file", ready)
	cmd.Dir = root
	cmd.Env = Environ(env)
	dieWithParent(cmd)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("sidecartest: start %s: %w", python, err)
	}
	s := &Sidecar{cmd: cmd, drained: make(chan struct{})}
	go s.read(stderr)
	timer := time.NewTimer(StartTimeout)
	defer timer.Stop()
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	for {
		if data, err := os.ReadFile(ready); err == nil { // renamed into place whole
			s.Addr = strings.TrimSpace(string(data))
			return s, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			_ = cmd.Process.Kill()
			<-s.drained
			_ = cmd.Wait()
			return nil, fmt.Errorf("sidecartest: read %s: %w", ready, err)
		}
		select {
		case <-ticker.C:
		case <-s.drained: // stderr closed: the sidecar exited
			err := cmd.Wait()
			return nil, fmt.Errorf("sidecartest: sidecar exited before serving (%v):\n%s", err, s.Log())
		case <-timer.C:
			_ = cmd.Process.Kill()
			<-s.drained
			_ = cmd.Wait()
			return nil, fmt.Errorf("sidecartest: sidecar did not serve within %v:\n%s", StartTimeout, s.Log())
		}
	}
}

// Run starts a sidecar for a test, failing it if the sidecar does not start, and stops the
// sidecar when the test ends, failing the test if it does not exit cleanly.
func Run(tb testing.TB, env map[string]string) *Sidecar {
	tb.Helper()
	s, err := Start(env)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.Stop(); err != nil {
			tb.Error(err)
		}
	})
	return s
}

func mergeListen(env map[string]string, listen string) map[string]string {
	out := maps.Clone(env)
	if out == nil {
		out = map[string]string{}
	}
	out["SIDECAR_LISTEN"] = listen
	return out
}

// read keeps every stderr line in the log until EOF.
func (s *Sidecar) read(stderr io.Reader) {
	defer close(s.drained)
	reader := bufio.NewReader(stderr)
	for {
		line, err := reader.ReadString('\n')
		if line != "" {
			line = strings.TrimRight(line, "\r\n")
			s.mu.Lock()
			s.log = append(s.log, line)
			s.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

// Log returns the sidecar's stderr so far, one line per line.
func (s *Sidecar) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.log, "\n")
}

// Stop sends SIGTERM, waits for the sidecar to drain and exit (killing it after StopTimeout),
// and returns an error unless it exited with status 0. Later calls return the same result.
func (s *Sidecar) Stop() error {
	s.stopOnce.Do(func() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		timer := time.NewTimer(StopTimeout)
		defer timer.Stop()
		select {
		case <-s.drained:
		case <-timer.C:
			_ = s.cmd.Process.Kill()
			<-s.drained
		}
		if err := s.cmd.Wait(); err != nil {
			s.stopErr = fmt.Errorf("sidecartest: sidecar %s did not exit cleanly after SIGTERM: %v\n%s",
				s.Addr, err, s.Log())
		}
	})
	return s.stopErr
}

// ClosedAddr returns "127.0.0.1:<port>" for a port that nothing listens on: bound once by
// this process, then released.
func ClosedAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		tb.Fatal(err)
	}
	return addr
}

// ShortTempDir returns a fresh directory directly under /tmp, removed when the test ends:
// AF_UNIX paths must stay under about 100 bytes, which t.TempDir's paths may exceed.
func ShortTempDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("/tmp", "sc-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}
