package sidecartest

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/auth-sidecar/auth-sidecar/clients/go/authsidecarv1"
)

// Flaky is a real in-process gRPC AuthService on 127.0.0.1 whose first Failures calls of each
// method fail with Code; later calls succeed (Validate: a valid decision for "alice"; Mint: the
// token "minted"; Revoke: kept until FlakyKeptUntil). It counts every call, so a test sees exactly how often a client tried.
type Flaky struct {
	authsidecarv1.UnimplementedAuthServiceServer

	Addr     string
	Failures int64
	Code     codes.Code

	validates atomic.Int64
	mints     atomic.Int64
	revokes   atomic.Int64
}

// FlakyKeptUntil is the KeptUntil of a Flaky server's Revoke answer.
var FlakyKeptUntil = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)

// RunFlaky starts a Flaky server for a test and stops it when the test ends.
func RunFlaky(tb testing.TB, failures int, code codes.Code) *Flaky {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	f := &Flaky{Addr: ln.Addr().String(), Failures: int64(failures), Code: code}
	server := grpc.NewServer()
	authsidecarv1.RegisterAuthServiceServer(server, f)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = server.Serve(ln)
	}()
	tb.Cleanup(func() {
		server.Stop()
		<-done
	})
	return f
}

// Attempts returns how many Validate and Mint calls the server received.
func (f *Flaky) Attempts() (validates, mints int) {
	return int(f.validates.Load()), int(f.mints.Load())
}

// Revokes returns how many Revoke calls the server received.
func (f *Flaky) Revokes() int {
	return int(f.revokes.Load())
}

func (f *Flaky) Validate(context.Context, *authsidecarv1.ValidateRequest) (*authsidecarv1.ValidateResponse, error) {
	if f.validates.Add(1) <= f.Failures {
		return nil, status.Error(f.Code, "flaky: try again")
	}
	return &authsidecarv1.ValidateResponse{Valid: true, UserId: "alice"}, nil
}

func (f *Flaky) Mint(context.Context, *authsidecarv1.MintRequest) (*authsidecarv1.MintResponse, error) {
	if f.mints.Add(1) <= f.Failures {
		return nil, status.Error(f.Code, "flaky: try again")
	}
	return &authsidecarv1.MintResponse{Token: "minted"}, nil
}

func (f *Flaky) Revoke(context.Context, *authsidecarv1.RevokeRequest) (*authsidecarv1.RevokeResponse, error) {
	if f.revokes.Add(1) <= f.Failures {
		return nil, status.Error(f.Code, "flaky: try again")
	}
	return &authsidecarv1.RevokeResponse{KeptUntil: timestamppb.New(FlakyKeptUntil)}, nil
}
