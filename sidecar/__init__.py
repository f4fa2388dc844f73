"""auth-sidecar: ElectricSQL-compatible JWT decisions for any sync server, over gRPC."""

__version__ = "0.1.0"
