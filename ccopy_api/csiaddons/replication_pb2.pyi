import datetime

from ccopy_api import csi_pb2 as _csi_pb2
from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
ALPHA_FIELD_FIELD_NUMBER: _ClassVar[int]
alpha_field: _descriptor.FieldDescriptor

class EnableVolumeReplicationRequest(_message.Message):
    __slots__ = ("parameters", "secrets", "replication_id", "replication_source")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class SecretsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    REPLICATION_ID_FIELD_NUMBER: _ClassVar[int]
    REPLICATION_SOURCE_FIELD_NUMBER: _ClassVar[int]
    parameters: _containers.ScalarMap[str, str]
    secrets: _containers.ScalarMap[str, str]
    replication_id: str
    replication_source: ReplicationSource
    def __init__(self, parameters: _Optional[_Mapping[str, str]] = ..., secrets: _Optional[_Mapping[str, str]] = ..., replication_id: _Optional[str] = ..., replication_source: _Optional[_Union[ReplicationSource, _Mapping]] = ...) -> None: ...

class EnableVolumeReplicationResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DisableVolumeReplicationRequest(_message.Message):
    __slots__ = ("parameters", "secrets", "replication_id", "replication_source")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class SecretsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    REPLICATION_ID_FIELD_NUMBER: _ClassVar[int]
    REPLICATION_SOURCE_FIELD_NUMBER: _ClassVar[int]
    parameters: _containers.ScalarMap[str, str]
    secrets: _containers.ScalarMap[str, str]
    replication_id: str
    replication_source: ReplicationSource
    def __init__(self, parameters: _Optional[_Mapping[str, str]] = ..., secrets: _Optional[_Mapping[str, str]] = ..., replication_id: _Optional[str] = ..., replication_source: _Optional[_Union[ReplicationSource, _Mapping]] = ...) -> None: ...

class DisableVolumeReplicationResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PromoteVolumeRequest(_message.Message):
    __slots__ = ("force", "parameters", "secrets", "replication_id", "replication_source")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class SecretsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FORCE_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    REPLICATION_ID_FIELD_NUMBER: _ClassVar[int]
    REPLICATION_SOURCE_FIELD_NUMBER: _ClassVar[int]
    force: bool
    parameters: _containers.ScalarMap[str, str]
    secrets: _containers.ScalarMap[str, str]
    replication_id: str
    replication_source: ReplicationSource
    def __init__(self, force: _Optional[bool] = ..., parameters: _Optional[_Mapping[str, str]] = ..., secrets: _Optional[_Mapping[str, str]] = ..., replication_id: _Optional[str] = ..., replication_source: _Optional[_Union[ReplicationSource, _Mapping]] = ...) -> None: ...

class PromoteVolumeResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DemoteVolumeRequest(_message.Message):
    __slots__ = ("force", "parameters", "secrets", "replication_id", "replication_source")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class SecretsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FORCE_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    REPLICATION_ID_FIELD_NUMBER: _ClassVar[int]
    REPLICATION_SOURCE_FIELD_NUMBER: _ClassVar[int]
    force: bool
    parameters: _containers.ScalarMap[str, str]
    secrets: _containers.ScalarMap[str, str]
    replication_id: str
    replication_source: ReplicationSource
    def __init__(self, force: _Optional[bool] = ..., parameters: _Optional[_Mapping[str, str]] = ..., secrets: _Optional[_Mapping[str, str]] = ..., replication_id: _Optional[str] = ..., replication_source: _Optional[_Union[ReplicationSource, _Mapping]] = ...) -> None: ...

class DemoteVolumeResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ResyncVolumeRequest(_message.Message):
    __slots__ = ("force", "parameters", "secrets", "replication_id", "replication_source")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class SecretsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FORCE_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    REPLICATION_ID_FIELD_NUMBER: _ClassVar[int]
    REPLICATION_SOURCE_FIELD_NUMBER: _ClassVar[int]
    force: bool
    parameters: _containers.ScalarMap[str, str]
    secrets: _containers.ScalarMap[str, str]
    replication_id: str
    replication_source: ReplicationSource
    def __init__(self, force: _Optional[bool] = ..., parameters: _Optional[_Mapping[str, str]] = ..., secrets: _Optional[_Mapping[str, str]] = ..., replication_id: _Optional[str] = ..., replication_source: _Optional[_Union[ReplicationSource, _Mapping]] = ...) -> None: ...

class ResyncVolumeResponse(_message.Message):
    __slots__ = ("ready",)
    READY_FIELD_NUMBER: _ClassVar[int]
    ready: bool
    def __init__(self, ready: _Optional[bool] = ...) -> None: ...

class GetVolumeReplicationInfoRequest(_message.Message):
    __slots__ = ("secrets", "replication_id", "replication_source")
    class SecretsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    REPLICATION_ID_FIELD_NUMBER: _ClassVar[int]
    REPLICATION_SOURCE_FIELD_NUMBER: _ClassVar[int]
    secrets: _containers.ScalarMap[str, str]
    replication_id: str
    replication_source: ReplicationSource
    def __init__(self, secrets: _Optional[_Mapping[str, str]] = ..., replication_id: _Optional[str] = ..., replication_source: _Optional[_Union[ReplicationSource, _Mapping]] = ...) -> None: ...

class GetVolumeReplicationInfoResponse(_message.Message):
    __slots__ = ("last_sync_time", "last_sync_duration", "last_sync_bytes", "status", "status_message")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        UNKNOWN: _ClassVar[GetVolumeReplicationInfoResponse.Status]
        HEALTHY: _ClassVar[GetVolumeReplicationInfoResponse.Status]
        DEGRADED: _ClassVar[GetVolumeReplicationInfoResponse.Status]
        ERROR: _ClassVar[GetVolumeReplicationInfoResponse.Status]
    UNKNOWN: GetVolumeReplicationInfoResponse.Status
    HEALTHY: GetVolumeReplicationInfoResponse.Status
    DEGRADED: GetVolumeReplicationInfoResponse.Status
    ERROR: GetVolumeReplicationInfoResponse.Status
    LAST_SYNC_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_SYNC_DURATION_FIELD_NUMBER: _ClassVar[int]
    LAST_SYNC_BYTES_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STATUS_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    last_sync_time: _timestamp_pb2.Timestamp
    last_sync_duration: _duration_pb2.Duration
    last_sync_bytes: int
    status: GetVolumeReplicationInfoResponse.Status
    status_message: str
    def __init__(self, last_sync_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_sync_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., last_sync_bytes: _Optional[int] = ..., status: _Optional[_Union[GetVolumeReplicationInfoResponse.Status, str]] = ..., status_message: _Optional[str] = ...) -> None: ...

class GetReplicationDestinationInfoRequest(_message.Message):
    __slots__ = ("secrets", "replication_source")
    class SecretsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    REPLICATION_SOURCE_FIELD_NUMBER: _ClassVar[int]
    secrets: _containers.ScalarMap[str, str]
    replication_source: ReplicationSource
    def __init__(self, secrets: _Optional[_Mapping[str, str]] = ..., replication_source: _Optional[_Union[ReplicationSource, _Mapping]] = ...) -> None: ...

class GetReplicationDestinationInfoResponse(_message.Message):
    __slots__ = ("replication_destination",)
    REPLICATION_DESTINATION_FIELD_NUMBER: _ClassVar[int]
    replication_destination: ReplicationDestination
    def __init__(self, replication_destination: _Optional[_Union[ReplicationDestination, _Mapping]] = ...) -> None: ...

class ReplicationDestination(_message.Message):
    __slots__ = ("volume", "volumegroup")
    class VolumeDestination(_message.Message):
        __slots__ = ("volume_id",)
        VOLUME_ID_FIELD_NUMBER: _ClassVar[int]
        volume_id: str
        def __init__(self, volume_id: _Optional[str] = ...) -> None: ...
    class VolumeGroupDestination(_message.Message):
        __slots__ = ("volume_group_id", "volume_ids")
        class VolumeIdsEntry(_message.Message):
            __slots__ = ("key", "value")
            KEY_FIELD_NUMBER: _ClassVar[int]
            VALUE_FIELD_NUMBER: _ClassVar[int]
            key: str
            value: str
            def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
        VOLUME_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
        VOLUME_IDS_FIELD_NUMBER: _ClassVar[int]
        volume_group_id: str
        volume_ids: _containers.ScalarMap[str, str]
        def __init__(self, volume_group_id: _Optional[str] = ..., volume_ids: _Optional[_Mapping[str, str]] = ...) -> None: ...
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    VOLUMEGROUP_FIELD_NUMBER: _ClassVar[int]
    volume: ReplicationDestination.VolumeDestination
    volumegroup: ReplicationDestination.VolumeGroupDestination
    def __init__(self, volume: _Optional[_Union[ReplicationDestination.VolumeDestination, _Mapping]] = ..., volumegroup: _Optional[_Union[ReplicationDestination.VolumeGroupDestination, _Mapping]] = ...) -> None: ...

class ReplicationSource(_message.Message):
    __slots__ = ("volume", "volumegroup")
    class VolumeSource(_message.Message):
        __slots__ = ("volume_id",)
        VOLUME_ID_FIELD_NUMBER: _ClassVar[int]
        volume_id: str
        def __init__(self, volume_id: _Optional[str] = ...) -> None: ...
    class VolumeGroupSource(_message.Message):
        __slots__ = ("volume_group_id",)
        VOLUME_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
        volume_group_id: str
        def __init__(self, volume_group_id: _Optional[str] = ...) -> None: ...
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    VOLUMEGROUP_FIELD_NUMBER: _ClassVar[int]
    volume: ReplicationSource.VolumeSource
    volumegroup: ReplicationSource.VolumeGroupSource
    def __init__(self, volume: _Optional[_Union[ReplicationSource.VolumeSource, _Mapping]] = ..., volumegroup: _Optional[_Union[ReplicationSource.VolumeGroupSource, _Mapping]] = ...) -> None: ...
