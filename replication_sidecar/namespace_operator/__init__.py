"""The namespace operator: one namespace label makes every volume of the namespace one
consistency group (a VolumeGroupReplication over its PVCs, one journal group on the
array), and a `ConsistentCopy` object tells a person how it is going.

`model` holds the plain values, `reconcile` the pure decisions, `status` what a person
reads, `kube` the thin client that observes and applies, `runner` the watches.
"""
