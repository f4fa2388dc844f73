"""The wire: each module turns one protocol's request into a core decision, and the decision into
that protocol's answer. `auth_service` is the gRPC AuthService (Validate, Mint), `ext_authz` is
Envoy's ext_authz Check, and `rpc` registers their handlers so that a request that does not
decode is INVALID_ARGUMENT, never UNKNOWN.
"""
