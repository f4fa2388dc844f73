package authsidecar_test

import (
	"reflect"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	authsidecar "github.com/auth-sidecar/auth-sidecar/clients/go"
	"github.com/auth-sidecar/auth-sidecar/clients/go/authsidecarv1"
	"github.com/auth-sidecar/auth-sidecar/clients/go/internal/sidecartest"
)

func TestMintWithShape(t *testing.T) {
	t.Parallel()
	s := sidecartest.Run(t, map[string]string{"AUTH_MODE": "insecure", "SIDECAR_SHAPE_CLAIM": "shape"})
	c := dial(t, s.Addr)
	m, err := c.Mint(t.Context(), "alice", authsidecar.WithShape(authsidecar.Shape{
		Table: "items", Where: "owner = $1", Columns: []string{"id", "title"}, Params: []string{"alice"},
	}), authsidecar.WithClaims(map[string]any{"role": "reader"}))
	if err != nil {
		t.Fatal(err)
	}
	d, err := c.Validate(t.Context(), m.Token)
	if err != nil || !d.Valid {
		t.Fatalf("validate: %+v, %v", d, err)
	}
	want := map[string]any{
		"table": "items", "where": "owner = $1", "columns": []any{"id", "title"}, "params": []any{"alice"},
	}
	if !reflect.DeepEqual(d.Claims[authsidecar.ShapeClaim], want) || d.Claims["role"] != "reader" {
		t.Fatalf("claims: %#v", d.Claims)
	}

	conn, err := grpc.NewClient(s.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	api := authsidecarv1.NewAuthServiceClient(conn)
	for params, wantValid := range map[string]bool{"alice": true, "bob": false} {
		resp, err := api.Validate(t.Context(), &authsidecarv1.ValidateRequest{
			Token: m.Token,
			Shape: &authsidecarv1.ShapeRequest{
				Table: "items", Where: "owner = $1", Columns: []string{"title", "id"}, Params: []string{params},
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetValid() != wantValid {
			t.Errorf("params %q: valid=%v, want %v", params, resp.GetValid(), wantValid)
		}
		if !wantValid && authsidecar.Reason(resp.GetReason()) != authsidecar.ReasonShapeMismatch {
			t.Errorf("params %q: reason %v", params, resp.GetReason())
		}
	}
}
