"""The chart's RBAC against what the whole e2e session did, read from both API servers'
audit logs: no request of an account the chart made was forbidden (the rules suffice), and
every rule of our own controllers and of the csi-addons sidecar (whose rules we derived,
its repository ships none) was needed by some request, so removing any of them breaks a
flow (least privilege). The kubernetes-csi sidecars keep their own repositories' rules.

It reads the session's record, so it runs after every other e2e test (conftest orders it
last) and only when they all ran and passed: after a subset, a rule unused proves nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e import chart, rbac
from tests.e2e.conftest import Sites

pytestmark = pytest.mark.after_all_e2e
SERVICE_ACCOUNT = "system:serviceaccount:" + chart.NAMESPACE + ":{}"
# Granted and not seen in the session, each for a path the e2e flows do not take.
NOT_SEEN_BY_DESIGN = {
    ("csiaddons.openshift.io", "csiaddonsnodes", "update"): "a restarted sidecar updates the node it finds",
    ("", "events", "patch"): "client-go patches an event that repeats instead of making a new one",
    ("coordination.k8s.io", "leases", "watch"): "the Lease rule every leader-elected kubernetes-csi sidecar has",
    ("coordination.k8s.io", "leases", "list"): "the same",
    ("coordination.k8s.io", "leases", "delete"): "the same",
}


def whole_session_ran(request: pytest.FixtureRequest) -> str:
    """Why the record is partial, or "" when every e2e module ran and nothing failed."""
    here = Path(__file__).parent
    ran = {Path(item.path).name for item in request.session.items if Path(item.path).parent == here}
    missing = sorted({path.name for path in here.glob("test_*.py")} - ran)
    if missing:
        return f"only part of the e2e session ran (not {', '.join(missing)})"
    if request.session.testsfailed:
        return f"{request.session.testsfailed} test(s) failed: their flows may not have run to the end"
    return ""


def test_the_chart_grants_what_the_flows_need_and_nothing_of_ours_more(sites: Sites, request):
    partial = whole_session_ran(request)
    if partial:
        pytest.skip(f"the least-privilege check reads the whole e2e session's audit log: {partial}")
    main, backup = sites.main.plane.audit_requests(), sites.backup.plane.audit_requests()
    assert rbac.forbidden(main + backup) == []
    controller = SERVICE_ACCOUNT.format(chart.account("controller"))
    checks = [
        ("namespace-operator", main, SERVICE_ACCOUNT.format(chart.account("namespace-operator")), ""),
        ("backup-site", backup, SERVICE_ACCOUNT.format(chart.account("backup-site")), ""),
        ("csi-addons-sidecar", main + backup, controller, "csi-addons-sidecar/"),
    ]
    never_needed = {
        component: [use for use in rbac.unused(rbac.RULES[component], rbac.used(events, user, agent))
                    if use not in NOT_SEEN_BY_DESIGN]
        for component, events, user, agent in checks
    }  # fmt: skip
    assert never_needed == {component: [] for component, *_ in checks}
