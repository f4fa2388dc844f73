package sidecartest

import (
	"encoding/base64"
	"encoding/json"
)

// Unsigned returns an unsigned development token (`alg: none`) carrying claims, the kind that
// an insecure-mode sidecar accepts without checking any signature.
func Unsigned(claims map[string]any) string {
	return Segment(map[string]any{"alg": "none", "typ": "JWT"}) + "." + Segment(claims) + "."
}

// Segment returns v as JSON in unpadded base64url, as one segment of a compact JWS.
func Segment(v any) string {
	raw, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(raw)
}
