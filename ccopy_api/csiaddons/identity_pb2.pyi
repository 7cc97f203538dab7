from google.protobuf import wrappers_pb2 as _wrappers_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetIdentityRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetIdentityResponse(_message.Message):
    __slots__ = ("name", "vendor_version", "manifest")
    class ManifestEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    VENDOR_VERSION_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    name: str
    vendor_version: str
    manifest: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., vendor_version: _Optional[str] = ..., manifest: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GetCapabilitiesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetCapabilitiesResponse(_message.Message):
    __slots__ = ("capabilities",)
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    capabilities: _containers.RepeatedCompositeFieldContainer[Capability]
    def __init__(self, capabilities: _Optional[_Iterable[_Union[Capability, _Mapping]]] = ...) -> None: ...

class Capability(_message.Message):
    __slots__ = ("service", "reclaim_space", "network_fence", "volume_replication", "volume_group", "encryption_key_rotation")
    class Service(_message.Message):
        __slots__ = ("type",)
        class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
            __slots__ = ()
            UNKNOWN: _ClassVar[Capability.Service.Type]
            CONTROLLER_SERVICE: _ClassVar[Capability.Service.Type]
            NODE_SERVICE: _ClassVar[Capability.Service.Type]
        UNKNOWN: Capability.Service.Type
        CONTROLLER_SERVICE: Capability.Service.Type
        NODE_SERVICE: Capability.Service.Type
        TYPE_FIELD_NUMBER: _ClassVar[int]
        type: Capability.Service.Type
        def __init__(self, type: _Optional[_Union[Capability.Service.Type, str]] = ...) -> None: ...
    class ReclaimSpace(_message.Message):
        __slots__ = ("type",)
        class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
            __slots__ = ()
            UNKNOWN: _ClassVar[Capability.ReclaimSpace.Type]
            OFFLINE: _ClassVar[Capability.ReclaimSpace.Type]
            ONLINE: _ClassVar[Capability.ReclaimSpace.Type]
        UNKNOWN: Capability.ReclaimSpace.Type
        OFFLINE: Capability.ReclaimSpace.Type
        ONLINE: Capability.ReclaimSpace.Type
        TYPE_FIELD_NUMBER: _ClassVar[int]
        type: Capability.ReclaimSpace.Type
        def __init__(self, type: _Optional[_Union[Capability.ReclaimSpace.Type, str]] = ...) -> None: ...
    class NetworkFence(_message.Message):
        __slots__ = ("type",)
        class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
            __slots__ = ()
            UNKNOWN: _ClassVar[Capability.NetworkFence.Type]
            NETWORK_FENCE: _ClassVar[Capability.NetworkFence.Type]
            GET_CLIENTS_TO_FENCE: _ClassVar[Capability.NetworkFence.Type]
        UNKNOWN: Capability.NetworkFence.Type
        NETWORK_FENCE: Capability.NetworkFence.Type
        GET_CLIENTS_TO_FENCE: Capability.NetworkFence.Type
        TYPE_FIELD_NUMBER: _ClassVar[int]
        type: Capability.NetworkFence.Type
        def __init__(self, type: _Optional[_Union[Capability.NetworkFence.Type, str]] = ...) -> None: ...
    class VolumeReplication(_message.Message):
        __slots__ = ("type",)
        class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
            __slots__ = ()
            UNKNOWN: _ClassVar[Capability.VolumeReplication.Type]
            VOLUME_REPLICATION: _ClassVar[Capability.VolumeReplication.Type]
            GET_REPLICATION_DESTINATION_INFO: _ClassVar[Capability.VolumeReplication.Type]
        UNKNOWN: Capability.VolumeReplication.Type
        VOLUME_REPLICATION: Capability.VolumeReplication.Type
        GET_REPLICATION_DESTINATION_INFO: Capability.VolumeReplication.Type
        TYPE_FIELD_NUMBER: _ClassVar[int]
        type: Capability.VolumeReplication.Type
        def __init__(self, type: _Optional[_Union[Capability.VolumeReplication.Type, str]] = ...) -> None: ...
    class VolumeGroup(_message.Message):
        __slots__ = ("type",)
        class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
            __slots__ = ()
            UNKNOWN: _ClassVar[Capability.VolumeGroup.Type]
            VOLUME_GROUP: _ClassVar[Capability.VolumeGroup.Type]
            LIMIT_VOLUME_TO_ONE_VOLUME_GROUP: _ClassVar[Capability.VolumeGroup.Type]
            DO_NOT_ALLOW_VG_TO_DELETE_VOLUMES: _ClassVar[Capability.VolumeGroup.Type]
            MODIFY_VOLUME_GROUP: _ClassVar[Capability.VolumeGroup.Type]
            GET_VOLUME_GROUP: _ClassVar[Capability.VolumeGroup.Type]
            LIST_VOLUME_GROUPS: _ClassVar[Capability.VolumeGroup.Type]
        UNKNOWN: Capability.VolumeGroup.Type
        VOLUME_GROUP: Capability.VolumeGroup.Type
        LIMIT_VOLUME_TO_ONE_VOLUME_GROUP: Capability.VolumeGroup.Type
        DO_NOT_ALLOW_VG_TO_DELETE_VOLUMES: Capability.VolumeGroup.Type
        MODIFY_VOLUME_GROUP: Capability.VolumeGroup.Type
        GET_VOLUME_GROUP: Capability.VolumeGroup.Type
        LIST_VOLUME_GROUPS: Capability.VolumeGroup.Type
        TYPE_FIELD_NUMBER: _ClassVar[int]
        type: Capability.VolumeGroup.Type
        def __init__(self, type: _Optional[_Union[Capability.VolumeGroup.Type, str]] = ...) -> None: ...
    class EncryptionKeyRotation(_message.Message):
        __slots__ = ("type",)
        class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
            __slots__ = ()
            UNKNOWN: _ClassVar[Capability.EncryptionKeyRotation.Type]
            ENCRYPTIONKEYROTATION: _ClassVar[Capability.EncryptionKeyRotation.Type]
        UNKNOWN: Capability.EncryptionKeyRotation.Type
        ENCRYPTIONKEYROTATION: Capability.EncryptionKeyRotation.Type
        TYPE_FIELD_NUMBER: _ClassVar[int]
        type: Capability.EncryptionKeyRotation.Type
        def __init__(self, type: _Optional[_Union[Capability.EncryptionKeyRotation.Type, str]] = ...) -> None: ...
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    RECLAIM_SPACE_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FENCE_FIELD_NUMBER: _ClassVar[int]
    VOLUME_REPLICATION_FIELD_NUMBER: _ClassVar[int]
    VOLUME_GROUP_FIELD_NUMBER: _ClassVar[int]
    ENCRYPTION_KEY_ROTATION_FIELD_NUMBER: _ClassVar[int]
    service: Capability.Service
    reclaim_space: Capability.ReclaimSpace
    network_fence: Capability.NetworkFence
    volume_replication: Capability.VolumeReplication
    volume_group: Capability.VolumeGroup
    encryption_key_rotation: Capability.EncryptionKeyRotation
    def __init__(self, service: _Optional[_Union[Capability.Service, _Mapping]] = ..., reclaim_space: _Optional[_Union[Capability.ReclaimSpace, _Mapping]] = ..., network_fence: _Optional[_Union[Capability.NetworkFence, _Mapping]] = ..., volume_replication: _Optional[_Union[Capability.VolumeReplication, _Mapping]] = ..., volume_group: _Optional[_Union[Capability.VolumeGroup, _Mapping]] = ..., encryption_key_rotation: _Optional[_Union[Capability.EncryptionKeyRotation, _Mapping]] = ...) -> None: ...

class ProbeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ProbeResponse(_message.Message):
    __slots__ = ("ready",)
    READY_FIELD_NUMBER: _ClassVar[int]
    ready: _wrappers_pb2.BoolValue
    def __init__(self, ready: _Optional[_Union[_wrappers_pb2.BoolValue, _Mapping]] = ...) -> None: ...
