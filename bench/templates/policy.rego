package envoy.authz

import rego.v1

default allow := false

cert := {cert}

allow if {{
    auth := input.attributes.request.http.headers.authorization
    startswith(auth, "Bearer ")
    [valid, _, _] := io.jwt.decode_verify(substring(auth, 7, -1), {{"cert": cert, "iss": "bench"}})
    valid
}}
