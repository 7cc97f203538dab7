"""The NBD error a host sees for a failure of the array: one table for every server path."""

from __future__ import annotations

import errno

from backend.nbd.constants import Errno
from backend.write_path import WriteRefused


def errno_for(exc: BaseException) -> Errno:
    """Map a failure of the array to the NBD error value the host sees."""
    if isinstance(exc, WriteRefused):
        code = exc.errno
    elif isinstance(exc, OSError):
        code = exc.errno or errno.EIO
    else:
        return Errno.EIO
    if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return Errno.ENOSPC
    if code in (errno.EPERM, errno.EACCES, errno.EROFS):
        return Errno.EPERM
    if code == errno.EINVAL:
        return Errno.EINVAL
    return Errno.EIO
