from ccopy_api import csi_pb2 as _csi_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateVolumeGroupRequest(_message.Message):
    __slots__ = ("name", "parameters", "secrets", "volume_ids")
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
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    VOLUME_IDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    parameters: _containers.ScalarMap[str, str]
    secrets: _containers.ScalarMap[str, str]
    volume_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., parameters: _Optional[_Mapping[str, str]] = ..., secrets: _Optional[_Mapping[str, str]] = ..., volume_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class CreateVolumeGroupResponse(_message.Message):
    __slots__ = ("volume_group",)
    VOLUME_GROUP_FIELD_NUMBER: _ClassVar[int]
    volume_group: VolumeGroup
    def __init__(self, volume_group: _Optional[_Union[VolumeGroup, _Mapping]] = ...) -> None: ...

class VolumeGroup(_message.Message):
    __slots__ = ("volume_group_id", "volume_group_context", "volumes")
    class VolumeGroupContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    VOLUME_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    VOLUME_GROUP_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    VOLUMES_FIELD_NUMBER: _ClassVar[int]
    volume_group_id: str
    volume_group_context: _containers.ScalarMap[str, str]
    volumes: _containers.RepeatedCompositeFieldContainer[_csi_pb2.Volume]
    def __init__(self, volume_group_id: _Optional[str] = ..., volume_group_context: _Optional[_Mapping[str, str]] = ..., volumes: _Optional[_Iterable[_Union[_csi_pb2.Volume, _Mapping]]] = ...) -> None: ...

class DeleteVolumeGroupRequest(_message.Message):
    __slots__ = ("volume_group_id", "secrets")
    class SecretsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    VOLUME_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    volume_group_id: str
    secrets: _containers.ScalarMap[str, str]
    def __init__(self, volume_group_id: _Optional[str] = ..., secrets: _Optional[_Mapping[str, str]] = ...) -> None: ...

class DeleteVolumeGroupResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModifyVolumeGroupMembershipRequest(_message.Message):
    __slots__ = ("volume_group_id", "volume_ids", "secrets", "parameters")
    class SecretsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    VOLUME_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    VOLUME_IDS_FIELD_NUMBER: _ClassVar[int]
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    volume_group_id: str
    volume_ids: _containers.RepeatedScalarFieldContainer[str]
    secrets: _containers.ScalarMap[str, str]
    parameters: _containers.ScalarMap[str, str]
    def __init__(self, volume_group_id: _Optional[str] = ..., volume_ids: _Optional[_Iterable[str]] = ..., secrets: _Optional[_Mapping[str, str]] = ..., parameters: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ModifyVolumeGroupMembershipResponse(_message.Message):
    __slots__ = ("volume_group",)
    VOLUME_GROUP_FIELD_NUMBER: _ClassVar[int]
    volume_group: VolumeGroup
    def __init__(self, volume_group: _Optional[_Union[VolumeGroup, _Mapping]] = ...) -> None: ...

class ControllerGetVolumeGroupRequest(_message.Message):
    __slots__ = ("volume_group_id", "secrets")
    class SecretsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    VOLUME_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    volume_group_id: str
    secrets: _containers.ScalarMap[str, str]
    def __init__(self, volume_group_id: _Optional[str] = ..., secrets: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ControllerGetVolumeGroupResponse(_message.Message):
    __slots__ = ("volume_group",)
    VOLUME_GROUP_FIELD_NUMBER: _ClassVar[int]
    volume_group: VolumeGroup
    def __init__(self, volume_group: _Optional[_Union[VolumeGroup, _Mapping]] = ...) -> None: ...

class ListVolumeGroupsRequest(_message.Message):
    __slots__ = ("max_entries", "starting_token", "secrets")
    class SecretsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MAX_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    STARTING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    max_entries: int
    starting_token: str
    secrets: _containers.ScalarMap[str, str]
    def __init__(self, max_entries: _Optional[int] = ..., starting_token: _Optional[str] = ..., secrets: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListVolumeGroupsResponse(_message.Message):
    __slots__ = ("entries", "next_token")
    class Entry(_message.Message):
        __slots__ = ("volume_group",)
        VOLUME_GROUP_FIELD_NUMBER: _ClassVar[int]
        volume_group: VolumeGroup
        def __init__(self, volume_group: _Optional[_Union[VolumeGroup, _Mapping]] = ...) -> None: ...
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[ListVolumeGroupsResponse.Entry]
    next_token: str
    def __init__(self, entries: _Optional[_Iterable[_Union[ListVolumeGroupsResponse.Entry, _Mapping]]] = ..., next_token: _Optional[str] = ...) -> None: ...
