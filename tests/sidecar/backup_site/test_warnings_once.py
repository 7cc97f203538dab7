"""A warning of the registrar is said once, whatever mix of full and quick passes follows.

A quick pass (nothing changed in the cluster) applies status actions only; it used to
forget the warnings said, so the next full pass said them again (an Event and a log line
each time the S-VOLs or the cluster changed)."""

from __future__ import annotations

from replication_sidecar.backup_site.model import Action, Observed, RegistrarConfig, SVol, Warning
from replication_sidecar.backup_site.runner import Registrar


class StillCluster:
    """A cluster and an array where nothing changes: one S-VOL the registrar cannot register."""

    def __init__(self) -> None:
        self.bare = (SVol("ccv1-2002-000009", 1 << 20, {"ccopy.svol-of": "1:000009"}, True),)
        self.applied: list[Action] = []

    def svols(self) -> tuple[SVol, ...]:
        return self.bare

    def journal_groups(self, names: set[str]) -> dict:
        return {}

    def observe(self, svols: tuple[SVol, ...]) -> Observed:
        return Observed(svols)

    def apply(self, actions: list[Action]) -> None:
        self.applied.extend(actions)


def test_a_warning_is_said_once_across_quick_and_full_passes():
    cluster = StillCluster()
    registrar = Registrar(None, cluster, RegistrarConfig())  # type: ignore[arg-type]
    for full in (True, False, False, True, False, True):
        registrar._one_pass(full)
    assert [a.reason for a in cluster.applied if isinstance(a, Warning)] == ["MissingLabels"]
