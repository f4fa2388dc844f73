"""Key material: the algorithm registry that turns configured keys into the core's verifiers and
signers (`algorithms`), JWK Sets (`jwks`), fetching and refreshing them from a URL or OIDC
discovery (`fetch`), and the listener's TLS certificate and key (`tls`).

Keys are parsed once, at load or at fetch, never on the request path. `fetch` is the only module
here that does network I/O.
"""
