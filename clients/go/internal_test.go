package authsidecar

import (
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/auth-sidecar/auth-sidecar/clients/go/authsidecarv1"
)

// These tests need no sidecar: they cover the conversions and the option checks.

func TestNumbers(t *testing.T) {
	cases := []struct {
		in   float64
		want any
	}{
		{0, int64(0)},
		{1_700_000_000, int64(1_700_000_000)},
		{-7, int64(-7)},
		{1 << 53, int64(1 << 53)},
		{-(1 << 53), int64(-(1 << 53))},
		{1 << 54, float64(1 << 54)},
		{0.5, 0.5},
		{1e300, 1e300},
		{math.Inf(1), math.Inf(1)},
	}
	for _, c := range cases {
		if got := number(c.in); got != c.want {
			t.Errorf("number(%v) = %#v, want %#v", c.in, got, c.want)
		}
	}
	if got, ok := number(math.NaN()).(float64); !ok || !math.IsNaN(got) {
		t.Errorf("number(NaN) = %#v", number(math.NaN()))
	}
}

func TestStructRoundTrip(t *testing.T) {
	type tagged struct {
		Name string `json:"name"`
	}
	s, err := toStruct(map[string]any{
		"list": []string{"a", "b"}, "map": map[string]string{"k": "v"}, "n": 3, "f": 0.25,
		"struct": tagged{Name: "x"}, "nil": nil, "num": json.Number("12"),
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"list": []any{"a", "b"}, "map": map[string]any{"k": "v"}, "n": int64(3), "f": 0.25,
		"struct": map[string]any{"name": "x"}, "nil": nil, "num": int64(12),
	}
	if got := fromStruct(s); !reflect.DeepEqual(got, want) {
		t.Errorf("got %#v\nwant %#v", got, want)
	}
	if fromStruct(nil) != nil {
		t.Error("fromStruct(nil) is not nil")
	}
	if _, err := toStruct(map[string]any{"x": math.Inf(1)}); err == nil {
		t.Error("toStruct accepted Inf")
	}
	if got := fromValue(&structpb.Value{}); got != nil {
		t.Errorf("a Value with no kind: %#v", got)
	}
}

func TestReasonNames(t *testing.T) {
	all := []Reason{
		ReasonUnspecified, ReasonMalformed, ReasonAlgorithmMismatch, ReasonBadSignature,
		ReasonExpired, ReasonNotYetValid, ReasonMissingClaim, ReasonInvalidClaim,
		ReasonInvalidUserID, ReasonShapeMismatch, ReasonForbidden, ReasonInactive,
		ReasonRevoked,
	}
	values := authsidecarv1.Reason(0).Descriptor().Values()
	if values.Len() != len(all) {
		t.Fatalf("the proto has %d reasons, this package %d", values.Len(), len(all))
	}
	for i, r := range all {
		want := string(values.Get(i).Name())
		if r.String() != want || int32(r) != int32(values.Get(i).Number()) {
			t.Errorf("%d: %s, want %s", int32(r), r, want)
		}
		var back Reason
		text, _ := r.MarshalText()
		if err := back.UnmarshalText(text); err != nil || back != r {
			t.Errorf("%s: text round trip gave %v, %v", r, back, err)
		}
	}
	unknown := Reason(42)
	if unknown.String() != "REASON_UNKNOWN_42" {
		t.Errorf("unknown reason: %q", unknown.String())
	}
	var back Reason
	if err := back.UnmarshalText([]byte("REASON_UNKNOWN_42")); err != nil || back != unknown {
		t.Errorf("unknown reason round trip: %v, %v", back, err)
	}
	if err := back.UnmarshalText([]byte("EXPIRED")); err == nil {
		t.Error("UnmarshalText accepted a name without the REASON_ prefix")
	}
	raw, err := json.Marshal(Decision{Reason: ReasonExpired, Message: "Expired token"})
	if err != nil || string(raw) != `{"valid":false,"reason":"REASON_EXPIRED","message":"Expired token"}` {
		t.Errorf("Decision as JSON: %s, %v", raw, err)
	}
}

func TestRetryServiceConfig(t *testing.T) {
	// The TypeScript and Python clients' tests expect this very policy.
	want := `{"methodConfig":[{"name":[{"service":"authsidecar.v1.AuthService"}],"retryPolicy":{` +
		`"backoffMultiplier":2,"initialBackoff":"0.100s","maxAttempts":3,"maxBackoff":"1.000s",` +
		`"retryableStatusCodes":["UNAVAILABLE"]}}]}`
	if got := retryServiceConfig(DefaultRetryAttempts, DefaultRetryBackoff); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	long := retryServiceConfig(5, 2500*time.Millisecond)
	if !strings.Contains(long, `"initialBackoff":"2.500s"`) || !strings.Contains(long, `"maxBackoff":"2.500s"`) {
		t.Errorf("a backoff above MaxRetryBackoff is not capped below itself: %s", long)
	}
	if got := retryServiceConfig(1, 0); got != "{}" {
		t.Errorf("retries off: %s", got)
	}
}

func TestDialChecksOptions(t *testing.T) {
	bad := map[string][]Option{
		"empty target":           nil,
		"zero attempts":          {WithRetry(0, time.Second)},
		"beyond gRPC's limit":    {WithRetry(6, time.Second)},
		"backoff below 10ms":     {WithRetry(3, 5*time.Millisecond)},
		"negative timeout":       {WithTimeout(-time.Second)},
		"empty unix path":        {WithUnixSocket("")},
		"nil credentials":        {WithTransportCredentials(nil)},
		"tcp target and unix":    {WithUnixSocket("/tmp/x.sock")},
		"other unix target, too": {WithUnixSocket("/tmp/x.sock")},
	}
	targets := map[string]string{"tcp target and unix": "127.0.0.1:1", "other unix target, too": "unix:/tmp/y.sock"}
	for name, opts := range bad {
		target := targets[name]
		if name != "empty target" && target == "" {
			target = "127.0.0.1:1"
		}
		if c, err := Dial(target, opts...); err == nil {
			_ = c.Close()
			t.Errorf("%s: Dial accepted it", name)
		}
	}
	c, err := Dial("", WithUnixSocket("/tmp/x.sock"), WithTimeout(0), WithRetry(1, 0), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.timeout != 0 {
		t.Errorf("options not applied: %+v", c)
	}
	if err := c.Close(); err != nil {
		t.Error(err)
	}
}
