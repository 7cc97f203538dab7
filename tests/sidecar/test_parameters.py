"""Replication class parameters: every key checked, unknown keys refused."""

import pytest

from ccopy_common.errors import InvalidArgument
from replication_sidecar.parameters import DEFAULT_JOURNAL_CAPACITY, GroupParameters, parse_parameters


def test_defaults_are_async_with_no_objective():
    assert parse_parameters({}) == GroupParameters(False, 0.0, DEFAULT_JOURNAL_CAPACITY)


def test_every_key():
    given = {"mode": "sync", "rpoSeconds": "30", "journalCapacity": "256Mi", "schedulingInterval": "1m30s"}
    assert parse_parameters(given) == GroupParameters(True, 30.0, 256 << 20)


@pytest.mark.parametrize(
    ("parameters", "named"),
    [
        ({"mode": "semi"}, "mode"),
        ({"rpoSeconds": "soon"}, "rpoSeconds"),
        ({"rpoSeconds": "0"}, "rpoSeconds"),
        ({"rpoSeconds": "-5"}, "rpoSeconds"),
        ({"rpoSeconds": "inf"}, "rpoSeconds"),
        ({"journalCapacity": "4Ki"}, "journalCapacity"),
        ({"journalCapacity": "lots"}, "journalCapacity"),
        ({"schedulingInterval": "every minute"}, "schedulingInterval"),
        ({"schedulingInterval": "60"}, "schedulingInterval"),
        ({"replicationMode": "async"}, "replicationMode"),  # a typo of a known key
        ({"replication.storage.openshift.io/replication-secret-name": "s"}, "replication-secret-name"),
    ],
)
def test_bad_parameters_are_invalid_arguments_that_name_the_key(parameters, named):
    with pytest.raises(InvalidArgument, match=named):
        parse_parameters(parameters)
