"""How large a request the server accepts, derived from what the API can legitimately carry.

gRPC refuses a longer message with RESOURCE_EXHAUSTED before any handler sees it, so a flood of
oversized calls cannot grow memory past (concurrent calls x this limit).
"""

from __future__ import annotations

# The worst case of protobuf's Struct against JSON: a list of one-digit numbers, where `1,`
# (2 bytes) becomes an 11-byte Value. Every other JSON shape encodes in fewer bytes per byte.
STRUCT_BYTES_PER_JSON_BYTE = 6
# Field tags, lengths, Mint's ttl: everything in a request besides its token, user and claims.
ENVELOPE_BYTES = 8 * 1024
# Envoy's default max_request_headers_kb (60). A CheckRequest carries the headers, and the path
# and host once more in their own fields; the body only with `with_request_body`, which the
# sidecar does not need (see README).
ENVOY_HEADERS_BYTES = 60 * 1024


def max_message_bytes(max_token_bytes: int) -> int:
    """The largest request any method needs, given SIDECAR_MAX_TOKEN_BYTES.

    - Validate: one token.
    - Mint: a user id and claims that must both fit in one token; base64url carries 3 bytes of
      JSON in 4 characters, and the claims arrive as a Struct.
    - Check: the HTTP headers, with the path and host repeated.
    """
    claims = max_token_bytes * 3 // 4 * STRUCT_BYTES_PER_JSON_BYTE
    mint = max_token_bytes + claims + ENVELOPE_BYTES
    check = 2 * ENVOY_HEADERS_BYTES + ENVELOPE_BYTES
    return max(mint, check)
