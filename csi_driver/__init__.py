"""The Consistent Copy CSI plugin: one module per CSI service, talking to the
array over its management API and to LDEVs over NBD."""
