"""Wire protocols, apart from what they carry: the HTTP/1.1 server and its messages.

Above the config and below the observability and the adapters, which build on it: it knows
routes, limits and bytes, never tokens or decisions. Does I/O only through the event loop.
"""
