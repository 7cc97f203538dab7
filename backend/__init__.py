"""The Consistent Copy storage array: LDEV pool, the one write path, NBD data path.

The domain modules here know nothing of gRPC or Kubernetes (an import-linter
contract enforces it); `backend.api` is the only transport layer.
"""
