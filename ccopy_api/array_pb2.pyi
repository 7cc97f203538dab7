import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LdevState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LDEV_STATE_UNSPECIFIED: _ClassVar[LdevState]
    LDEV_STATE_CREATING: _ClassVar[LdevState]
    LDEV_STATE_NORMAL: _ClassVar[LdevState]
    LDEV_STATE_DELETING: _ClassVar[LdevState]
LDEV_STATE_UNSPECIFIED: LdevState
LDEV_STATE_CREATING: LdevState
LDEV_STATE_NORMAL: LdevState
LDEV_STATE_DELETING: LdevState

class Ldev(_message.Message):
    __slots__ = ("id", "display_id", "name", "size_bytes", "allocated_bytes", "state", "labels", "read_only", "export_name", "open_sessions", "created_at", "updated_at")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    ALLOCATED_BYTES_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    EXPORT_NAME_FIELD_NUMBER: _ClassVar[int]
    OPEN_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: int
    display_id: str
    name: str
    size_bytes: int
    allocated_bytes: int
    state: LdevState
    labels: _containers.ScalarMap[str, str]
    read_only: bool
    export_name: str
    open_sessions: int
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[int] = ..., display_id: _Optional[str] = ..., name: _Optional[str] = ..., size_bytes: _Optional[int] = ..., allocated_bytes: _Optional[int] = ..., state: _Optional[_Union[LdevState, str]] = ..., labels: _Optional[_Mapping[str, str]] = ..., read_only: _Optional[bool] = ..., export_name: _Optional[str] = ..., open_sessions: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetArrayInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ArrayInfo(_message.Message):
    __slots__ = ("serial", "version", "nbd_address", "max_ldev_id", "max_request_bytes")
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    NBD_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    MAX_LDEV_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_REQUEST_BYTES_FIELD_NUMBER: _ClassVar[int]
    serial: int
    version: str
    nbd_address: str
    max_ldev_id: int
    max_request_bytes: int
    def __init__(self, serial: _Optional[int] = ..., version: _Optional[str] = ..., nbd_address: _Optional[str] = ..., max_ldev_id: _Optional[int] = ..., max_request_bytes: _Optional[int] = ...) -> None: ...

class CreateLdevRequest(_message.Message):
    __slots__ = ("name", "size_bytes", "labels", "read_only")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    name: str
    size_bytes: int
    labels: _containers.ScalarMap[str, str]
    read_only: bool
    def __init__(self, name: _Optional[str] = ..., size_bytes: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ..., read_only: _Optional[bool] = ...) -> None: ...

class DeleteLdevRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    def __init__(self, id: _Optional[int] = ...) -> None: ...

class DeleteLdevResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ExpandLdevRequest(_message.Message):
    __slots__ = ("id", "new_size_bytes")
    ID_FIELD_NUMBER: _ClassVar[int]
    NEW_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    id: int
    new_size_bytes: int
    def __init__(self, id: _Optional[int] = ..., new_size_bytes: _Optional[int] = ...) -> None: ...

class GetLdevRequest(_message.Message):
    __slots__ = ("id", "name")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    id: int
    name: str
    def __init__(self, id: _Optional[int] = ..., name: _Optional[str] = ...) -> None: ...

class ListLdevsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "label_selector")
    class LabelSelectorEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    LABEL_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    label_selector: _containers.ScalarMap[str, str]
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., label_selector: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListLdevsResponse(_message.Message):
    __slots__ = ("ldevs", "next_page_token")
    LDEVS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ldevs: _containers.RepeatedCompositeFieldContainer[Ldev]
    next_page_token: str
    def __init__(self, ldevs: _Optional[_Iterable[_Union[Ldev, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateLdevLabelsRequest(_message.Message):
    __slots__ = ("id", "set", "remove")
    class SetEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    SET_FIELD_NUMBER: _ClassVar[int]
    REMOVE_FIELD_NUMBER: _ClassVar[int]
    id: int
    set: _containers.ScalarMap[str, str]
    remove: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[int] = ..., set: _Optional[_Mapping[str, str]] = ..., remove: _Optional[_Iterable[str]] = ...) -> None: ...

class GetPoolRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Pool(_message.Message):
    __slots__ = ("path", "total_bytes", "free_bytes", "provisioned_bytes", "allocated_bytes", "ldev_count", "ldevs")
    PATH_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    PROVISIONED_BYTES_FIELD_NUMBER: _ClassVar[int]
    ALLOCATED_BYTES_FIELD_NUMBER: _ClassVar[int]
    LDEV_COUNT_FIELD_NUMBER: _ClassVar[int]
    LDEVS_FIELD_NUMBER: _ClassVar[int]
    path: str
    total_bytes: int
    free_bytes: int
    provisioned_bytes: int
    allocated_bytes: int
    ldev_count: int
    ldevs: _containers.RepeatedCompositeFieldContainer[LdevAllocation]
    def __init__(self, path: _Optional[str] = ..., total_bytes: _Optional[int] = ..., free_bytes: _Optional[int] = ..., provisioned_bytes: _Optional[int] = ..., allocated_bytes: _Optional[int] = ..., ldev_count: _Optional[int] = ..., ldevs: _Optional[_Iterable[_Union[LdevAllocation, _Mapping]]] = ...) -> None: ...

class LdevAllocation(_message.Message):
    __slots__ = ("id", "display_id", "name", "size_bytes", "allocated_bytes")
    ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    ALLOCATED_BYTES_FIELD_NUMBER: _ClassVar[int]
    id: int
    display_id: str
    name: str
    size_bytes: int
    allocated_bytes: int
    def __init__(self, id: _Optional[int] = ..., display_id: _Optional[str] = ..., name: _Optional[str] = ..., size_bytes: _Optional[int] = ..., allocated_bytes: _Optional[int] = ...) -> None: ...
