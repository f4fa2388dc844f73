"""Revocation stores: where revocations live, and how each worker's in-memory copy keeps up.

`base` is what the server sees; `sqlite` is the embedded store (one host, any workers), `redis`
the shared one (replicas). Each keeps a `core.revocation.Held` in step with its store.
"""
