"""The cost of one signature check per algorithm, in process: a whole decision (parse, verify,
claims) with the decision cache off, so that every call verifies.

    .venv/bin/python bench/algorithms.py           # about 1 s per algorithm
    .venv/bin/python bench/algorithms.py --smoke   # a fraction of a second each: what CI runs

Keys are PEM (AUTH_JWT_KEY), tokens are PyJWT's. RS256 and ES256 are the baselines that python-jose
verifies; PS* and EdDSA go through `cryptography` directly (sidecar/keys/native.py). The best of
several repeats is printed, never asserted.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support import secure_config, sign

from sidecar import config

ALGS = ("HS256", "RS256", "ES256", "PS256", "PS384", "PS512", "EdDSA", "Ed448")


def per_call_us(alg: str, seconds: float, repeats: int) -> float:
    now = time.time()
    cfg = secure_config(alg, SIDECAR_CACHE_SIZE="0")
    validator = config.build_validator(cfg, clock=lambda: now)
    token = sign(alg, {"user_id": "alice", "iat": int(now), "exp": int(now) + 600})
    assert validator.decide(token).valid, alg
    best = float("inf")
    for _ in range(repeats):
        calls, start = 0, time.perf_counter()
        deadline = start + seconds / repeats
        while time.perf_counter() < deadline:
            for _ in range(50):
                validator.decide(token)
            calls += 50
        best = min(best, (time.perf_counter() - start) / calls * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a short run, for CI")
    args = parser.parse_args()
    seconds, repeats = (0.1, 2) if args.smoke else (1.0, 5)
    print(f"{'alg':8} {'µs per decision':>16}")
    for alg in ALGS:
        print(f"{alg:8} {per_call_us(alg, seconds, repeats):16.1f}")


if __name__ == "__main__":
    main()
