"""The `ccopy` command: one entry point for every role, the operator tools and the demos.

What the processes share (version, gRPC plumbing, errors, ids, logging) lives one
layer down, in `ccopy_common`.
"""
