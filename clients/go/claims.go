package authsidecar

import (
	"encoding/json"
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
)

// exact is the largest magnitude up to which a double holds every integer.
const exact = 1 << 53

// toStruct converts Mint's claims through encoding/json, so that any value json can encode
// ([]string, map[string]string, structs with tags, json.Number...) is accepted, not only the
// handful of types structpb.NewStruct knows.
func toStruct(claims map[string]any) (*structpb.Struct, error) {
	raw, err := json.Marshal(claims)
	if err != nil {
		return nil, fmt.Errorf("claims are not JSON: %w", err)
	}
	out := &structpb.Struct{}
	if err := protojson.Unmarshal(raw, out); err != nil {
		return nil, fmt.Errorf("claims are not a JSON object: %w", err)
	}
	return out, nil
}

// fromStruct converts a Struct to JSON-like Go values; see Decision.Claims.
func fromStruct(s *structpb.Struct) map[string]any {
	if s == nil {
		return nil
	}
	out := make(map[string]any, len(s.GetFields()))
	for key, value := range s.GetFields() {
		out[key] = fromValue(value)
	}
	return out
}

func fromValue(v *structpb.Value) any {
	switch kind := v.GetKind().(type) {
	case *structpb.Value_BoolValue:
		return kind.BoolValue
	case *structpb.Value_NumberValue:
		return number(kind.NumberValue)
	case *structpb.Value_StringValue:
		return kind.StringValue
	case *structpb.Value_StructValue:
		return fromStruct(kind.StructValue)
	case *structpb.Value_ListValue:
		items := kind.ListValue.GetValues()
		out := make([]any, len(items))
		for i, item := range items {
			out[i] = fromValue(item)
		}
		return out
	default: // NullValue, or no kind at all
		return nil
	}
}

// number returns a whole double within ±2^53 as an int64, and any other as it is.
func number(f float64) any {
	if f == math.Trunc(f) && math.Abs(f) <= exact {
		return int64(f)
	}
	return f
}
