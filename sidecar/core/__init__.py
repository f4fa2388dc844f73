"""The decision core: pure, no I/O, no gRPC, no logging, nothing but the standard library.

Tokens (`jws`), claim rules (`claims`), the `Validator` and `Minter`, what they enforce
(`policy`), the verifier and signer interfaces that the keys layer fills (`crypto`), errors and
reasons (`errors`), shape matching (`shape`), the decision cache (`cache`) and routing by `iss`
(`routing`). The clock is injected; every adapter decides through this package.
"""
