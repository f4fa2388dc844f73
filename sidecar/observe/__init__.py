"""What can be seen from outside: Prometheus metrics (`metrics`), log lines (`logs`), the calls in
flight that the drain waits on (`traffic`), the decision log and the wrapping of deciders with
all of it (`observability`), and the HTTP side listener for /metrics, health and the JWK Set
(`side`). All of it is off the hot path unless the config asks for it.
"""
