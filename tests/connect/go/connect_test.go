// Package connecttest calls AuthService over the Connect protocol with connect-go's own client
// (connectrpc.com/connect), generic over the messages that clients/go generates from the proto:
// no Connect code generation, and both of Connect's codecs.
//
// tests/test_connect_clients.py starts an insecure sidecar with SIDECAR_HTTP_API_LISTEN and runs
// `go test` here with SIDECAR_URL (the HTTP API) and GOOD_TOKEN (an unsigned token for alice
// with the claim role=admin).
package connecttest

import (
	"context"
	"errors"
	"net/http"
	"os"
	"regexp"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	v1 "github.com/auth-sidecar/auth-sidecar/clients/go/authsidecarv1"
)

const service = "/authsidecar.v1.AuthService/"

type clients struct {
	validate *connect.Client[v1.ValidateRequest, v1.ValidateResponse]
	mint     *connect.Client[v1.MintRequest, v1.MintResponse]
}

func newClients(t *testing.T, options ...connect.ClientOption) clients {
	t.Helper()
	base := os.Getenv("SIDECAR_URL")
	if base == "" {
		t.Fatal("set SIDECAR_URL; tests/test_connect_clients.py does")
	}
	return clients{
		validate: connect.NewClient[v1.ValidateRequest, v1.ValidateResponse](
			http.DefaultClient, base+service+"Validate", options...),
		mint: connect.NewClient[v1.MintRequest, v1.MintResponse](
			http.DefaultClient, base+service+"Mint", options...),
	}
}

func codecs() map[string][]connect.ClientOption {
	return map[string][]connect.ClientOption{
		"proto": nil,
		"json":  {connect.WithProtoJSON()},
	}
}

func TestValidateAndMint(t *testing.T) {
	good := os.Getenv("GOOD_TOKEN")
	for name, options := range codecs() {
		t.Run(name, func(t *testing.T) {
			c := newClients(t, options...)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()

			ok, err := c.validate.CallUnary(ctx, connect.NewRequest(&v1.ValidateRequest{Token: good}))
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if !ok.Msg.GetValid() || ok.Msg.GetUserId() != "alice" {
				t.Fatalf("good token: %v", ok.Msg)
			}
			if role := ok.Msg.GetClaims().GetFields()["role"].GetStringValue(); role != "admin" {
				t.Fatalf("claims: %v", ok.Msg.GetClaims())
			}

			bad, err := c.validate.CallUnary(ctx, connect.NewRequest(&v1.ValidateRequest{Token: "not-a-token"}))
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if bad.Msg.GetValid() || bad.Msg.GetReason() != v1.Reason_REASON_MALFORMED ||
				bad.Msg.GetMessage() != "Invalid token" {
				t.Fatalf("bad token: %v", bad.Msg)
			}

			claims, _ := structpb.NewStruct(map[string]any{"team": "blue"})
			minted, err := c.mint.CallUnary(ctx, connect.NewRequest(&v1.MintRequest{
				UserId: "bob", Claims: claims, Ttl: durationpb.New(time.Minute),
			}))
			if err != nil {
				t.Fatalf("Mint: %v", err)
			}
			if !regexp.MustCompile(`^[\w-]+\.[\w-]+\.$`).MatchString(minted.Msg.GetToken()) {
				t.Fatalf("an insecure token is unsigned: %q", minted.Msg.GetToken())
			}
			back, err := c.validate.CallUnary(ctx, connect.NewRequest(&v1.ValidateRequest{Token: minted.Msg.GetToken()}))
			if err != nil || back.Msg.GetUserId() != "bob" {
				t.Fatalf("the minted token: %v, %v", back, err)
			}

			_, err = c.mint.CallUnary(ctx, connect.NewRequest(&v1.MintRequest{UserId: " "}))
			var connectErr *connect.Error
			if !errors.As(err, &connectErr) || connectErr.Code() != connect.CodeInvalidArgument {
				t.Fatalf("blank user id: want invalid_argument, got %v", err)
			}
		})
	}
}
