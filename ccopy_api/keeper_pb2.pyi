from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ConnectRequest(_message.Message):
    __slots__ = ("uri", "fuse_dir", "read_only", "tls_certificates")
    URI_FIELD_NUMBER: _ClassVar[int]
    FUSE_DIR_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    TLS_CERTIFICATES_FIELD_NUMBER: _ClassVar[int]
    uri: str
    fuse_dir: str
    read_only: bool
    tls_certificates: str
    def __init__(self, uri: _Optional[str] = ..., fuse_dir: _Optional[str] = ..., read_only: _Optional[bool] = ..., tls_certificates: _Optional[str] = ...) -> None: ...

class Connection(_message.Message):
    __slots__ = ("uri", "fuse_dir", "pid", "alive")
    URI_FIELD_NUMBER: _ClassVar[int]
    FUSE_DIR_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    ALIVE_FIELD_NUMBER: _ClassVar[int]
    uri: str
    fuse_dir: str
    pid: int
    alive: bool
    def __init__(self, uri: _Optional[str] = ..., fuse_dir: _Optional[str] = ..., pid: _Optional[int] = ..., alive: _Optional[bool] = ...) -> None: ...

class DisconnectRequest(_message.Message):
    __slots__ = ("fuse_dir", "lazily")
    FUSE_DIR_FIELD_NUMBER: _ClassVar[int]
    LAZILY_FIELD_NUMBER: _ClassVar[int]
    fuse_dir: str
    lazily: bool
    def __init__(self, fuse_dir: _Optional[str] = ..., lazily: _Optional[bool] = ...) -> None: ...

class DisconnectReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListConnectionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListConnectionsReply(_message.Message):
    __slots__ = ("connections",)
    CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    connections: _containers.RepeatedCompositeFieldContainer[Connection]
    def __init__(self, connections: _Optional[_Iterable[_Union[Connection, _Mapping]]] = ...) -> None: ...
