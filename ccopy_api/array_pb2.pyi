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
    LDEV_STATE_COPYING: _ClassVar[LdevState]

class PairState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PAIR_STATE_UNSPECIFIED: _ClassVar[PairState]
    SMPL: _ClassVar[PairState]
    COPY: _ClassVar[PairState]
    PAIR: _ClassVar[PairState]
    PSUS: _ClassVar[PairState]
    PSUE: _ClassVar[PairState]
    PFUS: _ClassVar[PairState]
    SSWS: _ClassVar[PairState]
LDEV_STATE_UNSPECIFIED: LdevState
LDEV_STATE_CREATING: LdevState
LDEV_STATE_NORMAL: LdevState
LDEV_STATE_DELETING: LdevState
LDEV_STATE_COPYING: LdevState
PAIR_STATE_UNSPECIFIED: PairState
SMPL: PairState
COPY: PairState
PAIR: PairState
PSUS: PairState
PSUE: PairState
PFUS: PairState
SSWS: PairState

class CopyProgress(_message.Message):
    __slots__ = ("total_bytes", "copied_bytes")
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    COPIED_BYTES_FIELD_NUMBER: _ClassVar[int]
    total_bytes: int
    copied_bytes: int
    def __init__(self, total_bytes: _Optional[int] = ..., copied_bytes: _Optional[int] = ...) -> None: ...

class Ldev(_message.Message):
    __slots__ = ("id", "display_id", "name", "size_bytes", "allocated_bytes", "state", "labels", "read_only", "export_name", "open_sessions", "created_at", "updated_at", "chunk_size_bytes", "snapshot_count", "snapshot_bytes", "copy_progress", "max_iops", "max_mbps", "published_hosts", "open_to_all")
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
    CHUNK_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_COUNT_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_BYTES_FIELD_NUMBER: _ClassVar[int]
    COPY_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    MAX_IOPS_FIELD_NUMBER: _ClassVar[int]
    MAX_MBPS_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_HOSTS_FIELD_NUMBER: _ClassVar[int]
    OPEN_TO_ALL_FIELD_NUMBER: _ClassVar[int]
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
    chunk_size_bytes: int
    snapshot_count: int
    snapshot_bytes: int
    copy_progress: CopyProgress
    max_iops: int
    max_mbps: int
    published_hosts: _containers.RepeatedScalarFieldContainer[str]
    open_to_all: bool
    def __init__(self, id: _Optional[int] = ..., display_id: _Optional[str] = ..., name: _Optional[str] = ..., size_bytes: _Optional[int] = ..., allocated_bytes: _Optional[int] = ..., state: _Optional[_Union[LdevState, str]] = ..., labels: _Optional[_Mapping[str, str]] = ..., read_only: _Optional[bool] = ..., export_name: _Optional[str] = ..., open_sessions: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., chunk_size_bytes: _Optional[int] = ..., snapshot_count: _Optional[int] = ..., snapshot_bytes: _Optional[int] = ..., copy_progress: _Optional[_Union[CopyProgress, _Mapping]] = ..., max_iops: _Optional[int] = ..., max_mbps: _Optional[int] = ..., published_hosts: _Optional[_Iterable[str]] = ..., open_to_all: _Optional[bool] = ...) -> None: ...

class GetArrayInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ArrayInfo(_message.Message):
    __slots__ = ("serial", "version", "nbd_address", "max_ldev_id", "max_request_bytes", "nbd_hosts_by_certificate")
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    NBD_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    MAX_LDEV_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_REQUEST_BYTES_FIELD_NUMBER: _ClassVar[int]
    NBD_HOSTS_BY_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    serial: int
    version: str
    nbd_address: str
    max_ldev_id: int
    max_request_bytes: int
    nbd_hosts_by_certificate: bool
    def __init__(self, serial: _Optional[int] = ..., version: _Optional[str] = ..., nbd_address: _Optional[str] = ..., max_ldev_id: _Optional[int] = ..., max_request_bytes: _Optional[int] = ..., nbd_hosts_by_certificate: _Optional[bool] = ...) -> None: ...

class CreateLdevRequest(_message.Message):
    __slots__ = ("name", "size_bytes", "labels", "read_only", "max_iops", "max_mbps", "open_to_all")
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
    MAX_IOPS_FIELD_NUMBER: _ClassVar[int]
    MAX_MBPS_FIELD_NUMBER: _ClassVar[int]
    OPEN_TO_ALL_FIELD_NUMBER: _ClassVar[int]
    name: str
    size_bytes: int
    labels: _containers.ScalarMap[str, str]
    read_only: bool
    max_iops: int
    max_mbps: int
    open_to_all: bool
    def __init__(self, name: _Optional[str] = ..., size_bytes: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ..., read_only: _Optional[bool] = ..., max_iops: _Optional[int] = ..., max_mbps: _Optional[int] = ..., open_to_all: _Optional[bool] = ...) -> None: ...

class DeleteLdevRequest(_message.Message):
    __slots__ = ("id", "cascade")
    ID_FIELD_NUMBER: _ClassVar[int]
    CASCADE_FIELD_NUMBER: _ClassVar[int]
    id: int
    cascade: bool
    def __init__(self, id: _Optional[int] = ..., cascade: _Optional[bool] = ...) -> None: ...

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

class Snapshot(_message.Message):
    __slots__ = ("id", "name", "ldev_id", "ldev_display_id", "group_id", "size_bytes", "ready", "export_name", "labels", "created_at")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LDEV_ID_FIELD_NUMBER: _ClassVar[int]
    LDEV_DISPLAY_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    EXPORT_NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: int
    name: str
    ldev_id: int
    ldev_display_id: str
    group_id: int
    size_bytes: int
    ready: bool
    export_name: str
    labels: _containers.ScalarMap[str, str]
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[int] = ..., name: _Optional[str] = ..., ldev_id: _Optional[int] = ..., ldev_display_id: _Optional[str] = ..., group_id: _Optional[int] = ..., size_bytes: _Optional[int] = ..., ready: _Optional[bool] = ..., export_name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateSnapshotRequest(_message.Message):
    __slots__ = ("name", "ldev_id", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    LDEV_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    name: str
    ldev_id: int
    labels: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., ldev_id: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class DeleteSnapshotRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    def __init__(self, id: _Optional[int] = ...) -> None: ...

class DeleteSnapshotResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetSnapshotRequest(_message.Message):
    __slots__ = ("id", "name")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    id: int
    name: str
    def __init__(self, id: _Optional[int] = ..., name: _Optional[str] = ...) -> None: ...

class ListSnapshotsRequest(_message.Message):
    __slots__ = ("ldev_id", "page_size", "page_token", "group_id")
    LDEV_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    ldev_id: int
    page_size: int
    page_token: str
    group_id: int
    def __init__(self, ldev_id: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., group_id: _Optional[int] = ...) -> None: ...

class ListSnapshotsResponse(_message.Message):
    __slots__ = ("snapshots", "next_page_token")
    SNAPSHOTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    snapshots: _containers.RepeatedCompositeFieldContainer[Snapshot]
    next_page_token: str
    def __init__(self, snapshots: _Optional[_Iterable[_Union[Snapshot, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class SnapshotGroup(_message.Message):
    __slots__ = ("id", "name", "snapshots", "stall_micros", "labels", "created_at")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOTS_FIELD_NUMBER: _ClassVar[int]
    STALL_MICROS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: int
    name: str
    snapshots: _containers.RepeatedCompositeFieldContainer[Snapshot]
    stall_micros: int
    labels: _containers.ScalarMap[str, str]
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[int] = ..., name: _Optional[str] = ..., snapshots: _Optional[_Iterable[_Union[Snapshot, _Mapping]]] = ..., stall_micros: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateSnapshotGroupRequest(_message.Message):
    __slots__ = ("name", "ldev_ids", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    LDEV_IDS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    name: str
    ldev_ids: _containers.RepeatedScalarFieldContainer[int]
    labels: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., ldev_ids: _Optional[_Iterable[int]] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class DeleteSnapshotGroupRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    def __init__(self, id: _Optional[int] = ...) -> None: ...

class DeleteSnapshotGroupResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetSnapshotGroupRequest(_message.Message):
    __slots__ = ("id", "name")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    id: int
    name: str
    def __init__(self, id: _Optional[int] = ..., name: _Optional[str] = ...) -> None: ...

class ListSnapshotGroupsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSnapshotGroupsResponse(_message.Message):
    __slots__ = ("groups", "next_page_token")
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    groups: _containers.RepeatedCompositeFieldContainer[SnapshotGroup]
    next_page_token: str
    def __init__(self, groups: _Optional[_Iterable[_Union[SnapshotGroup, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CloneLdevRequest(_message.Message):
    __slots__ = ("name", "snapshot_id", "ldev_id", "size_bytes", "labels", "max_iops", "max_mbps", "open_to_all")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_ID_FIELD_NUMBER: _ClassVar[int]
    LDEV_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    MAX_IOPS_FIELD_NUMBER: _ClassVar[int]
    MAX_MBPS_FIELD_NUMBER: _ClassVar[int]
    OPEN_TO_ALL_FIELD_NUMBER: _ClassVar[int]
    name: str
    snapshot_id: int
    ldev_id: int
    size_bytes: int
    labels: _containers.ScalarMap[str, str]
    max_iops: int
    max_mbps: int
    open_to_all: bool
    def __init__(self, name: _Optional[str] = ..., snapshot_id: _Optional[int] = ..., ldev_id: _Optional[int] = ..., size_bytes: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ..., max_iops: _Optional[int] = ..., max_mbps: _Optional[int] = ..., open_to_all: _Optional[bool] = ...) -> None: ...

class RestoreLdevRequest(_message.Message):
    __slots__ = ("ldev_id", "snapshot_id")
    LDEV_ID_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_ID_FIELD_NUMBER: _ClassVar[int]
    ldev_id: int
    snapshot_id: int
    def __init__(self, ldev_id: _Optional[int] = ..., snapshot_id: _Optional[int] = ...) -> None: ...

class Extent(_message.Message):
    __slots__ = ("offset", "length")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    offset: int
    length: int
    def __init__(self, offset: _Optional[int] = ..., length: _Optional[int] = ...) -> None: ...

class ExtentPage(_message.Message):
    __slots__ = ("extents", "next_offset", "chunk_size_bytes", "size_bytes")
    EXTENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_OFFSET_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    extents: _containers.RepeatedCompositeFieldContainer[Extent]
    next_offset: int
    chunk_size_bytes: int
    size_bytes: int
    def __init__(self, extents: _Optional[_Iterable[_Union[Extent, _Mapping]]] = ..., next_offset: _Optional[int] = ..., chunk_size_bytes: _Optional[int] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class GetAllocatedExtentsRequest(_message.Message):
    __slots__ = ("snapshot_id", "starting_offset", "max_results")
    SNAPSHOT_ID_FIELD_NUMBER: _ClassVar[int]
    STARTING_OFFSET_FIELD_NUMBER: _ClassVar[int]
    MAX_RESULTS_FIELD_NUMBER: _ClassVar[int]
    snapshot_id: int
    starting_offset: int
    max_results: int
    def __init__(self, snapshot_id: _Optional[int] = ..., starting_offset: _Optional[int] = ..., max_results: _Optional[int] = ...) -> None: ...

class GetChangedExtentsRequest(_message.Message):
    __slots__ = ("base_snapshot_id", "target_snapshot_id", "starting_offset", "max_results")
    BASE_SNAPSHOT_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_SNAPSHOT_ID_FIELD_NUMBER: _ClassVar[int]
    STARTING_OFFSET_FIELD_NUMBER: _ClassVar[int]
    MAX_RESULTS_FIELD_NUMBER: _ClassVar[int]
    base_snapshot_id: int
    target_snapshot_id: int
    starting_offset: int
    max_results: int
    def __init__(self, base_snapshot_id: _Optional[int] = ..., target_snapshot_id: _Optional[int] = ..., starting_offset: _Optional[int] = ..., max_results: _Optional[int] = ...) -> None: ...

class Publication(_message.Message):
    __slots__ = ("ldev_id", "host_id", "read_only", "export_name", "created_at", "max_size_bytes")
    LDEV_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    EXPORT_NAME_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    MAX_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    ldev_id: int
    host_id: str
    read_only: bool
    export_name: str
    created_at: _timestamp_pb2.Timestamp
    max_size_bytes: int
    def __init__(self, ldev_id: _Optional[int] = ..., host_id: _Optional[str] = ..., read_only: _Optional[bool] = ..., export_name: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., max_size_bytes: _Optional[int] = ...) -> None: ...

class PublishLdevRequest(_message.Message):
    __slots__ = ("ldev_id", "host_id", "read_only", "max_size_bytes")
    LDEV_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    MAX_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    ldev_id: int
    host_id: str
    read_only: bool
    max_size_bytes: int
    def __init__(self, ldev_id: _Optional[int] = ..., host_id: _Optional[str] = ..., read_only: _Optional[bool] = ..., max_size_bytes: _Optional[int] = ...) -> None: ...

class UnpublishLdevRequest(_message.Message):
    __slots__ = ("ldev_id", "host_id")
    LDEV_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    ldev_id: int
    host_id: str
    def __init__(self, ldev_id: _Optional[int] = ..., host_id: _Optional[str] = ...) -> None: ...

class UnpublishLdevResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RegisterHostRequest(_message.Message):
    __slots__ = ("host_id", "max_volumes")
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_VOLUMES_FIELD_NUMBER: _ClassVar[int]
    host_id: str
    max_volumes: int
    def __init__(self, host_id: _Optional[str] = ..., max_volumes: _Optional[int] = ...) -> None: ...

class GetHostRequest(_message.Message):
    __slots__ = ("host_id",)
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    host_id: str
    def __init__(self, host_id: _Optional[str] = ...) -> None: ...

class Host(_message.Message):
    __slots__ = ("host_id", "max_volumes", "published_ldevs")
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_VOLUMES_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_LDEVS_FIELD_NUMBER: _ClassVar[int]
    host_id: str
    max_volumes: int
    published_ldevs: int
    def __init__(self, host_id: _Optional[str] = ..., max_volumes: _Optional[int] = ..., published_ldevs: _Optional[int] = ...) -> None: ...

class ListPublicationsRequest(_message.Message):
    __slots__ = ("ldev_id",)
    LDEV_ID_FIELD_NUMBER: _ClassVar[int]
    ldev_id: int
    def __init__(self, ldev_id: _Optional[int] = ...) -> None: ...

class ListPublicationsResponse(_message.Message):
    __slots__ = ("publications",)
    PUBLICATIONS_FIELD_NUMBER: _ClassVar[int]
    publications: _containers.RepeatedCompositeFieldContainer[Publication]
    def __init__(self, publications: _Optional[_Iterable[_Union[Publication, _Mapping]]] = ...) -> None: ...

class SetLdevQosRequest(_message.Message):
    __slots__ = ("ldev_id", "max_iops", "max_mbps")
    LDEV_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_IOPS_FIELD_NUMBER: _ClassVar[int]
    MAX_MBPS_FIELD_NUMBER: _ClassVar[int]
    ldev_id: int
    max_iops: int
    max_mbps: int
    def __init__(self, ldev_id: _Optional[int] = ..., max_iops: _Optional[int] = ..., max_mbps: _Optional[int] = ...) -> None: ...

class SetLdevAccessRequest(_message.Message):
    __slots__ = ("ldev_id", "open_to_all")
    LDEV_ID_FIELD_NUMBER: _ClassVar[int]
    OPEN_TO_ALL_FIELD_NUMBER: _ClassVar[int]
    ldev_id: int
    open_to_all: bool
    def __init__(self, ldev_id: _Optional[int] = ..., open_to_all: _Optional[bool] = ...) -> None: ...

class Pair(_message.Message):
    __slots__ = ("id", "group_name", "role", "local_ldev_id", "local_display_id", "remote_ldev_id", "remote_serial", "state", "copied_bytes", "copy_total_bytes", "local_name", "export_name")
    ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    LOCAL_LDEV_ID_FIELD_NUMBER: _ClassVar[int]
    LOCAL_DISPLAY_ID_FIELD_NUMBER: _ClassVar[int]
    REMOTE_LDEV_ID_FIELD_NUMBER: _ClassVar[int]
    REMOTE_SERIAL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    COPIED_BYTES_FIELD_NUMBER: _ClassVar[int]
    COPY_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    LOCAL_NAME_FIELD_NUMBER: _ClassVar[int]
    EXPORT_NAME_FIELD_NUMBER: _ClassVar[int]
    id: int
    group_name: str
    role: str
    local_ldev_id: int
    local_display_id: str
    remote_ldev_id: int
    remote_serial: int
    state: PairState
    copied_bytes: int
    copy_total_bytes: int
    local_name: str
    export_name: str
    def __init__(self, id: _Optional[int] = ..., group_name: _Optional[str] = ..., role: _Optional[str] = ..., local_ldev_id: _Optional[int] = ..., local_display_id: _Optional[str] = ..., remote_ldev_id: _Optional[int] = ..., remote_serial: _Optional[int] = ..., state: _Optional[_Union[PairState, str]] = ..., copied_bytes: _Optional[int] = ..., copy_total_bytes: _Optional[int] = ..., local_name: _Optional[str] = ..., export_name: _Optional[str] = ...) -> None: ...

class CreatePairRequest(_message.Message):
    __slots__ = ("group_name", "pvol_id", "journal_capacity_bytes", "svol_id", "synchronous")
    GROUP_NAME_FIELD_NUMBER: _ClassVar[int]
    PVOL_ID_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    SVOL_ID_FIELD_NUMBER: _ClassVar[int]
    SYNCHRONOUS_FIELD_NUMBER: _ClassVar[int]
    group_name: str
    pvol_id: int
    journal_capacity_bytes: int
    svol_id: int
    synchronous: bool
    def __init__(self, group_name: _Optional[str] = ..., pvol_id: _Optional[int] = ..., journal_capacity_bytes: _Optional[int] = ..., svol_id: _Optional[int] = ..., synchronous: _Optional[bool] = ...) -> None: ...

class ListPairsRequest(_message.Message):
    __slots__ = ("group_name",)
    GROUP_NAME_FIELD_NUMBER: _ClassVar[int]
    group_name: str
    def __init__(self, group_name: _Optional[str] = ...) -> None: ...

class ListPairsResponse(_message.Message):
    __slots__ = ("pairs",)
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    pairs: _containers.RepeatedCompositeFieldContainer[Pair]
    def __init__(self, pairs: _Optional[_Iterable[_Union[Pair, _Mapping]]] = ...) -> None: ...

class CreateJournalGroupRequest(_message.Message):
    __slots__ = ("name", "capacity_bytes", "synchronous", "rpo_seconds")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    SYNCHRONOUS_FIELD_NUMBER: _ClassVar[int]
    RPO_SECONDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    capacity_bytes: int
    synchronous: bool
    rpo_seconds: float
    def __init__(self, name: _Optional[str] = ..., capacity_bytes: _Optional[int] = ..., synchronous: _Optional[bool] = ..., rpo_seconds: _Optional[float] = ...) -> None: ...

class FenceJournalGroupRequest(_message.Message):
    __slots__ = ("name", "fenced")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FENCED_FIELD_NUMBER: _ClassVar[int]
    name: str
    fenced: bool
    def __init__(self, name: _Optional[str] = ..., fenced: _Optional[bool] = ...) -> None: ...

class DeleteJournalGroupRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteJournalGroupResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListJournalGroupsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListJournalGroupsResponse(_message.Message):
    __slots__ = ("groups",)
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    groups: _containers.RepeatedCompositeFieldContainer[JournalGroup]
    def __init__(self, groups: _Optional[_Iterable[_Union[JournalGroup, _Mapping]]] = ...) -> None: ...

class GetJournalGroupRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class JournalGroup(_message.Message):
    __slots__ = ("id", "name", "role", "capacity_bytes", "usage_bytes", "main_seq", "confirmed_seq", "applied_seq", "pending_records", "pending_bytes", "lag_seconds", "transfer_bytes_per_second", "remote_serial", "pairs", "overflowed", "split", "split_seq", "journal_nearly_full", "synchronous", "inflow_control", "data_overflow_watch_seconds", "rpo_seconds", "fenced", "given_up", "last_contact", "recovery_point", "last_verify")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    USAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAIN_SEQ_FIELD_NUMBER: _ClassVar[int]
    CONFIRMED_SEQ_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQ_FIELD_NUMBER: _ClassVar[int]
    PENDING_RECORDS_FIELD_NUMBER: _ClassVar[int]
    PENDING_BYTES_FIELD_NUMBER: _ClassVar[int]
    LAG_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_BYTES_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    REMOTE_SERIAL_FIELD_NUMBER: _ClassVar[int]
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    OVERFLOWED_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    SPLIT_SEQ_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_NEARLY_FULL_FIELD_NUMBER: _ClassVar[int]
    SYNCHRONOUS_FIELD_NUMBER: _ClassVar[int]
    INFLOW_CONTROL_FIELD_NUMBER: _ClassVar[int]
    DATA_OVERFLOW_WATCH_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RPO_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FENCED_FIELD_NUMBER: _ClassVar[int]
    GIVEN_UP_FIELD_NUMBER: _ClassVar[int]
    LAST_CONTACT_FIELD_NUMBER: _ClassVar[int]
    RECOVERY_POINT_FIELD_NUMBER: _ClassVar[int]
    LAST_VERIFY_FIELD_NUMBER: _ClassVar[int]
    id: int
    name: str
    role: str
    capacity_bytes: int
    usage_bytes: int
    main_seq: int
    confirmed_seq: int
    applied_seq: int
    pending_records: int
    pending_bytes: int
    lag_seconds: float
    transfer_bytes_per_second: float
    remote_serial: int
    pairs: _containers.RepeatedCompositeFieldContainer[Pair]
    overflowed: bool
    split: bool
    split_seq: int
    journal_nearly_full: bool
    synchronous: bool
    inflow_control: bool
    data_overflow_watch_seconds: float
    rpo_seconds: float
    fenced: bool
    given_up: DataGivenUp
    last_contact: _timestamp_pb2.Timestamp
    recovery_point: _timestamp_pb2.Timestamp
    last_verify: VerifySummary
    def __init__(self, id: _Optional[int] = ..., name: _Optional[str] = ..., role: _Optional[str] = ..., capacity_bytes: _Optional[int] = ..., usage_bytes: _Optional[int] = ..., main_seq: _Optional[int] = ..., confirmed_seq: _Optional[int] = ..., applied_seq: _Optional[int] = ..., pending_records: _Optional[int] = ..., pending_bytes: _Optional[int] = ..., lag_seconds: _Optional[float] = ..., transfer_bytes_per_second: _Optional[float] = ..., remote_serial: _Optional[int] = ..., pairs: _Optional[_Iterable[_Union[Pair, _Mapping]]] = ..., overflowed: _Optional[bool] = ..., split: _Optional[bool] = ..., split_seq: _Optional[int] = ..., journal_nearly_full: _Optional[bool] = ..., synchronous: _Optional[bool] = ..., inflow_control: _Optional[bool] = ..., data_overflow_watch_seconds: _Optional[float] = ..., rpo_seconds: _Optional[float] = ..., fenced: _Optional[bool] = ..., given_up: _Optional[_Union[DataGivenUp, _Mapping]] = ..., last_contact: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., recovery_point: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_verify: _Optional[_Union[VerifySummary, _Mapping]] = ...) -> None: ...

class UpdateJournalGroupRequest(_message.Message):
    __slots__ = ("name", "inflow_control", "data_overflow_watch_seconds", "rpo_seconds")
    NAME_FIELD_NUMBER: _ClassVar[int]
    INFLOW_CONTROL_FIELD_NUMBER: _ClassVar[int]
    DATA_OVERFLOW_WATCH_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RPO_SECONDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    inflow_control: bool
    data_overflow_watch_seconds: float
    rpo_seconds: float
    def __init__(self, name: _Optional[str] = ..., inflow_control: _Optional[bool] = ..., data_overflow_watch_seconds: _Optional[float] = ..., rpo_seconds: _Optional[float] = ...) -> None: ...

class SplitPairsRequest(_message.Message):
    __slots__ = ("group_name", "svol_writable")
    GROUP_NAME_FIELD_NUMBER: _ClassVar[int]
    SVOL_WRITABLE_FIELD_NUMBER: _ClassVar[int]
    group_name: str
    svol_writable: bool
    def __init__(self, group_name: _Optional[str] = ..., svol_writable: _Optional[bool] = ...) -> None: ...

class ResyncPairsRequest(_message.Message):
    __slots__ = ("group_name",)
    GROUP_NAME_FIELD_NUMBER: _ClassVar[int]
    group_name: str
    def __init__(self, group_name: _Optional[str] = ...) -> None: ...

class TakeoverRequest(_message.Message):
    __slots__ = ("group_name", "force")
    GROUP_NAME_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    group_name: str
    force: bool
    def __init__(self, group_name: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class DataGivenUp(_message.Message):
    __slots__ = ("records", "bytes", "seconds", "exact", "last_contact", "recovery_point")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    LAST_CONTACT_FIELD_NUMBER: _ClassVar[int]
    RECOVERY_POINT_FIELD_NUMBER: _ClassVar[int]
    records: int
    bytes: int
    seconds: float
    exact: bool
    last_contact: _timestamp_pb2.Timestamp
    recovery_point: _timestamp_pb2.Timestamp
    def __init__(self, records: _Optional[int] = ..., bytes: _Optional[int] = ..., seconds: _Optional[float] = ..., exact: _Optional[bool] = ..., last_contact: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., recovery_point: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class TakeoverResponse(_message.Message):
    __slots__ = ("group", "given_up")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    GIVEN_UP_FIELD_NUMBER: _ClassVar[int]
    group: JournalGroup
    given_up: DataGivenUp
    def __init__(self, group: _Optional[_Union[JournalGroup, _Mapping]] = ..., given_up: _Optional[_Union[DataGivenUp, _Mapping]] = ...) -> None: ...

class DescribeUnappliedRequest(_message.Message):
    __slots__ = ("group_name", "applied_seq")
    GROUP_NAME_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQ_FIELD_NUMBER: _ClassVar[int]
    group_name: str
    applied_seq: int
    def __init__(self, group_name: _Optional[str] = ..., applied_seq: _Optional[int] = ...) -> None: ...

class PrepareResyncRequest(_message.Message):
    __slots__ = ("group_name",)
    GROUP_NAME_FIELD_NUMBER: _ClassVar[int]
    group_name: str
    def __init__(self, group_name: _Optional[str] = ...) -> None: ...

class ResyncBitmap(_message.Message):
    __slots__ = ("pvol_id", "bits")
    PVOL_ID_FIELD_NUMBER: _ClassVar[int]
    BITS_FIELD_NUMBER: _ClassVar[int]
    pvol_id: int
    bits: bytes
    def __init__(self, pvol_id: _Optional[int] = ..., bits: _Optional[bytes] = ...) -> None: ...

class DiffBitmaps(_message.Message):
    __slots__ = ("bitmaps",)
    BITMAPS_FIELD_NUMBER: _ClassVar[int]
    bitmaps: _containers.RepeatedCompositeFieldContainer[ResyncBitmap]
    def __init__(self, bitmaps: _Optional[_Iterable[_Union[ResyncBitmap, _Mapping]]] = ...) -> None: ...

class DeletePairRequest(_message.Message):
    __slots__ = ("pvol_id",)
    PVOL_ID_FIELD_NUMBER: _ClassVar[int]
    pvol_id: int
    def __init__(self, pvol_id: _Optional[int] = ...) -> None: ...

class DeleteSecondaryRequest(_message.Message):
    __slots__ = ("group_name", "pvol_id")
    GROUP_NAME_FIELD_NUMBER: _ClassVar[int]
    PVOL_ID_FIELD_NUMBER: _ClassVar[int]
    group_name: str
    pvol_id: int
    def __init__(self, group_name: _Optional[str] = ..., pvol_id: _Optional[int] = ...) -> None: ...

class DeletePairResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class FailbackRequest(_message.Message):
    __slots__ = ("group_name",)
    GROUP_NAME_FIELD_NUMBER: _ClassVar[int]
    group_name: str
    def __init__(self, group_name: _Optional[str] = ...) -> None: ...

class DemoteRequest(_message.Message):
    __slots__ = ("group_name", "applied_seq", "last_seq")
    GROUP_NAME_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQ_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    group_name: str
    applied_seq: int
    last_seq: int
    def __init__(self, group_name: _Optional[str] = ..., applied_seq: _Optional[int] = ..., last_seq: _Optional[int] = ...) -> None: ...

class PrepareSecondaryRequest(_message.Message):
    __slots__ = ("group_name", "capacity_bytes", "main_serial", "pvol_id", "pvol_name", "size_bytes", "svol_id", "open_to_all", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    GROUP_NAME_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAIN_SERIAL_FIELD_NUMBER: _ClassVar[int]
    PVOL_ID_FIELD_NUMBER: _ClassVar[int]
    PVOL_NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SVOL_ID_FIELD_NUMBER: _ClassVar[int]
    OPEN_TO_ALL_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    group_name: str
    capacity_bytes: int
    main_serial: int
    pvol_id: int
    pvol_name: str
    size_bytes: int
    svol_id: int
    open_to_all: bool
    labels: _containers.ScalarMap[str, str]
    def __init__(self, group_name: _Optional[str] = ..., capacity_bytes: _Optional[int] = ..., main_serial: _Optional[int] = ..., pvol_id: _Optional[int] = ..., pvol_name: _Optional[str] = ..., size_bytes: _Optional[int] = ..., svol_id: _Optional[int] = ..., open_to_all: _Optional[bool] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class PrepareSecondaryResponse(_message.Message):
    __slots__ = ("svol_id",)
    SVOL_ID_FIELD_NUMBER: _ClassVar[int]
    svol_id: int
    def __init__(self, svol_id: _Optional[int] = ...) -> None: ...

class StartCopyRequest(_message.Message):
    __slots__ = ("group_name", "pvol_id", "base_snapshot_id")
    GROUP_NAME_FIELD_NUMBER: _ClassVar[int]
    PVOL_ID_FIELD_NUMBER: _ClassVar[int]
    BASE_SNAPSHOT_ID_FIELD_NUMBER: _ClassVar[int]
    group_name: str
    pvol_id: int
    base_snapshot_id: int
    def __init__(self, group_name: _Optional[str] = ..., pvol_id: _Optional[int] = ..., base_snapshot_id: _Optional[int] = ...) -> None: ...

class StartCopyResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PullJournalRequest(_message.Message):
    __slots__ = ("group_name", "from_seq", "max_bytes", "wait_ms", "applied_seq")
    GROUP_NAME_FIELD_NUMBER: _ClassVar[int]
    FROM_SEQ_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQ_FIELD_NUMBER: _ClassVar[int]
    group_name: str
    from_seq: int
    max_bytes: int
    wait_ms: int
    applied_seq: int
    def __init__(self, group_name: _Optional[str] = ..., from_seq: _Optional[int] = ..., max_bytes: _Optional[int] = ..., wait_ms: _Optional[int] = ..., applied_seq: _Optional[int] = ...) -> None: ...

class PullJournalResponse(_message.Message):
    __slots__ = ("records", "main_next_seq", "main_oldest_ns", "split", "split_seq", "svol_writable", "split_state", "synchronous", "unapplied")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    MAIN_NEXT_SEQ_FIELD_NUMBER: _ClassVar[int]
    MAIN_OLDEST_NS_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    SPLIT_SEQ_FIELD_NUMBER: _ClassVar[int]
    SVOL_WRITABLE_FIELD_NUMBER: _ClassVar[int]
    SPLIT_STATE_FIELD_NUMBER: _ClassVar[int]
    SYNCHRONOUS_FIELD_NUMBER: _ClassVar[int]
    UNAPPLIED_FIELD_NUMBER: _ClassVar[int]
    records: bytes
    main_next_seq: int
    main_oldest_ns: int
    split: bool
    split_seq: int
    svol_writable: bool
    split_state: PairState
    synchronous: bool
    unapplied: Unapplied
    def __init__(self, records: _Optional[bytes] = ..., main_next_seq: _Optional[int] = ..., main_oldest_ns: _Optional[int] = ..., split: _Optional[bool] = ..., split_seq: _Optional[int] = ..., svol_writable: _Optional[bool] = ..., split_state: _Optional[_Union[PairState, str]] = ..., synchronous: _Optional[bool] = ..., unapplied: _Optional[_Union[Unapplied, _Mapping]] = ...) -> None: ...

class Unapplied(_message.Message):
    __slots__ = ("records", "bytes", "oldest_write", "newest_write", "newest_seq", "as_of")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    OLDEST_WRITE_FIELD_NUMBER: _ClassVar[int]
    NEWEST_WRITE_FIELD_NUMBER: _ClassVar[int]
    NEWEST_SEQ_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    records: int
    bytes: int
    oldest_write: _timestamp_pb2.Timestamp
    newest_write: _timestamp_pb2.Timestamp
    newest_seq: int
    as_of: _timestamp_pb2.Timestamp
    def __init__(self, records: _Optional[int] = ..., bytes: _Optional[int] = ..., oldest_write: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., newest_write: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., newest_seq: _Optional[int] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ReadBaseRequest(_message.Message):
    __slots__ = ("pvol_id", "snapshot_id", "offset", "max_bytes", "end_offset")
    PVOL_ID_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    END_OFFSET_FIELD_NUMBER: _ClassVar[int]
    pvol_id: int
    snapshot_id: int
    offset: int
    max_bytes: int
    end_offset: int
    def __init__(self, pvol_id: _Optional[int] = ..., snapshot_id: _Optional[int] = ..., offset: _Optional[int] = ..., max_bytes: _Optional[int] = ..., end_offset: _Optional[int] = ...) -> None: ...

class BasePiece(_message.Message):
    __slots__ = ("offset", "data")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    offset: int
    data: bytes
    def __init__(self, offset: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class ReadBaseResponse(_message.Message):
    __slots__ = ("pieces", "next_offset", "total_bytes")
    PIECES_FIELD_NUMBER: _ClassVar[int]
    NEXT_OFFSET_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    pieces: _containers.RepeatedCompositeFieldContainer[BasePiece]
    next_offset: int
    total_bytes: int
    def __init__(self, pieces: _Optional[_Iterable[_Union[BasePiece, _Mapping]]] = ..., next_offset: _Optional[int] = ..., total_bytes: _Optional[int] = ...) -> None: ...

class CompleteInitialCopyRequest(_message.Message):
    __slots__ = ("group_name", "pvol_id")
    GROUP_NAME_FIELD_NUMBER: _ClassVar[int]
    PVOL_ID_FIELD_NUMBER: _ClassVar[int]
    group_name: str
    pvol_id: int
    def __init__(self, group_name: _Optional[str] = ..., pvol_id: _Optional[int] = ...) -> None: ...

class CompleteInitialCopyResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VerifyPairsRequest(_message.Message):
    __slots__ = ("group_name", "repair")
    GROUP_NAME_FIELD_NUMBER: _ClassVar[int]
    REPAIR_FIELD_NUMBER: _ClassVar[int]
    group_name: str
    repair: bool
    def __init__(self, group_name: _Optional[str] = ..., repair: _Optional[bool] = ...) -> None: ...

class VerifySummary(_message.Message):
    __slots__ = ("verified_at", "seq", "at_split", "region_bytes", "regions_compared", "regions_differing", "regions_skipped", "bytes_compared", "repaired", "seconds")
    VERIFIED_AT_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    AT_SPLIT_FIELD_NUMBER: _ClassVar[int]
    REGION_BYTES_FIELD_NUMBER: _ClassVar[int]
    REGIONS_COMPARED_FIELD_NUMBER: _ClassVar[int]
    REGIONS_DIFFERING_FIELD_NUMBER: _ClassVar[int]
    REGIONS_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    BYTES_COMPARED_FIELD_NUMBER: _ClassVar[int]
    REPAIRED_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    verified_at: _timestamp_pb2.Timestamp
    seq: int
    at_split: bool
    region_bytes: int
    regions_compared: int
    regions_differing: int
    regions_skipped: int
    bytes_compared: int
    repaired: bool
    seconds: float
    def __init__(self, verified_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., seq: _Optional[int] = ..., at_split: _Optional[bool] = ..., region_bytes: _Optional[int] = ..., regions_compared: _Optional[int] = ..., regions_differing: _Optional[int] = ..., regions_skipped: _Optional[int] = ..., bytes_compared: _Optional[int] = ..., repaired: _Optional[bool] = ..., seconds: _Optional[float] = ...) -> None: ...

class DifferingRegion(_message.Message):
    __slots__ = ("pvol_id", "pvol_display_id", "pvol_name", "svol_id", "offset", "length")
    PVOL_ID_FIELD_NUMBER: _ClassVar[int]
    PVOL_DISPLAY_ID_FIELD_NUMBER: _ClassVar[int]
    PVOL_NAME_FIELD_NUMBER: _ClassVar[int]
    SVOL_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    pvol_id: int
    pvol_display_id: str
    pvol_name: str
    svol_id: int
    offset: int
    length: int
    def __init__(self, pvol_id: _Optional[int] = ..., pvol_display_id: _Optional[str] = ..., pvol_name: _Optional[str] = ..., svol_id: _Optional[int] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ...) -> None: ...

class VerifyPairsResponse(_message.Message):
    __slots__ = ("group_name", "summary", "differing")
    GROUP_NAME_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    DIFFERING_FIELD_NUMBER: _ClassVar[int]
    group_name: str
    summary: VerifySummary
    differing: _containers.RepeatedCompositeFieldContainer[DifferingRegion]
    def __init__(self, group_name: _Optional[str] = ..., summary: _Optional[_Union[VerifySummary, _Mapping]] = ..., differing: _Optional[_Iterable[_Union[DifferingRegion, _Mapping]]] = ...) -> None: ...

class SecondaryDigestsRequest(_message.Message):
    __slots__ = ("group_name", "seq", "region_bytes", "at_split")
    GROUP_NAME_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    REGION_BYTES_FIELD_NUMBER: _ClassVar[int]
    AT_SPLIT_FIELD_NUMBER: _ClassVar[int]
    group_name: str
    seq: int
    region_bytes: int
    at_split: bool
    def __init__(self, group_name: _Optional[str] = ..., seq: _Optional[int] = ..., region_bytes: _Optional[int] = ..., at_split: _Optional[bool] = ...) -> None: ...

class SecondaryDigestPart(_message.Message):
    __slots__ = ("cut", "pvol_id", "svol_id", "size_bytes", "first_region", "digests", "changed")
    CUT_FIELD_NUMBER: _ClassVar[int]
    PVOL_ID_FIELD_NUMBER: _ClassVar[int]
    SVOL_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    FIRST_REGION_FIELD_NUMBER: _ClassVar[int]
    DIGESTS_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    cut: bool
    pvol_id: int
    svol_id: int
    size_bytes: int
    first_region: int
    digests: bytes
    changed: bytes
    def __init__(self, cut: _Optional[bool] = ..., pvol_id: _Optional[int] = ..., svol_id: _Optional[int] = ..., size_bytes: _Optional[int] = ..., first_region: _Optional[int] = ..., digests: _Optional[bytes] = ..., changed: _Optional[bytes] = ...) -> None: ...
