"""The array's management gRPC service: the only gRPC-aware part of `backend`."""
