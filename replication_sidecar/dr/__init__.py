"""`ccopy dr`: failover, failback, status and a non-disruptive drill of one protected
namespace, for people who want one command. Each command makes the same changes to
the same standard Kubernetes objects a person could make with kubectl (the
VolumeGroupReplications' replicationState, a VolumeGroupSnapshot, PVCs restored from
its VolumeSnapshots) and waits for what the sites report on them."""
