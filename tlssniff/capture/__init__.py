"""Capture layer: read frames from capture files and decode them down to TCP/UDP."""

from tlssniff.capture.decode import (
    LINKTYPE_NAMES,
    SUPPORTED_LINKTYPES,
    MalformedFrame,
    decode_frame,
    format_endpoint,
)
from tlssniff.capture.files import CaptureFile, open_capture

__all__ = [
    "LINKTYPE_NAMES",
    "SUPPORTED_LINKTYPES",
    "CaptureFile",
    "MalformedFrame",
    "decode_frame",
    "format_endpoint",
    "open_capture",
]
