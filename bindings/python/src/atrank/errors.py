"""Exceptions raised by the atrank binding.

Every error that comes back from the C library is raised as a subclass of :class:`Error` chosen
by its stable code (``enum atrank_code`` in ``capi/include/atrank.h``) and carries that code and the
library's message. The C error object is always freed before the exception is raised.
"""

from __future__ import annotations

import enum


class Code(enum.IntEnum):
    """``enum atrank_code`` of ``capi/include/atrank.h`` (numbers are never reused)."""

    OK = 0
    NULL_ARGUMENT = 1
    INVALID_ARGUMENT = 2
    INVALID_UTF8 = 3
    IO = 4
    INVALID_PACKAGE = 5
    BACKEND_UNAVAILABLE = 6
    BACKEND = 7
    PANIC = 8
    BUFFER_SIZE = 9


class Error(Exception):
    """Base class of everything atrank raises.

    ``code`` is the C library's numeric code (an :class:`int`, see :class:`Code`), or ``None``
    for :class:`LibraryError`, which happens before the library is usable. ``message`` is the
    library's message, which names the argument at fault (e.g. ``behaviors[3].item``).
    """

    code_value: int | None = None

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = self.code_value if code is None else code

    @property
    def code_name(self) -> str:
        """The C name of the code, e.g. ``ATRANK_ERROR_INVALID_ARGUMENT``."""
        if self.code is None:
            return "ATRANK_LIBRARY"
        try:
            name = Code(self.code).name
        except ValueError:
            return f"ATRANK_CODE_{self.code}"
        return "ATRANK_OK" if name == "OK" else f"ATRANK_ERROR_{name}"

    def __str__(self) -> str:
        return self.message


class LibraryError(Error):
    """``libatrank.so`` cannot be found or loaded, or its ABI is not the one this binding was
    written for."""


class NullArgumentError(Error):
    """A required value was missing (NULL on the C side); the message names it."""

    code_value = Code.NULL_ARGUMENT


class InvalidArgumentError(Error):
    """An argument's value is unacceptable; the message names it. Also raised by the binding
    itself, with the same code, for values it cannot pass to C (wrong type, NUL inside a string,
    a timestamp outside int64)."""

    code_value = Code.INVALID_ARGUMENT


class InvalidUtf8Error(Error):
    """A string argument is not valid UTF-8."""

    code_value = Code.INVALID_UTF8


class PackageIOError(Error):
    """A package file could not be read."""

    code_value = Code.IO


class InvalidPackageError(Error):
    """The package is malformed (spec, version, vocabularies, catalog or graph)."""

    code_value = Code.INVALID_PACKAGE


class BackendUnavailableError(Error):
    """The backend is not compiled in or its runtime library (ONNX Runtime) cannot be loaded."""

    code_value = Code.BACKEND_UNAVAILABLE


class BackendError(Error):
    """The backend failed while loading or running the graph."""

    code_value = Code.BACKEND


class PanicError(Error):
    """A panic inside atrank was caught at the C boundary (a bug; please report it)."""

    code_value = Code.PANIC


class BufferSizeError(Error):
    """An output buffer's length did not match (a bug in the binding if it ever happens)."""

    code_value = Code.BUFFER_SIZE


_BY_CODE: dict[int, type[Error]] = {
    cls.code_value: cls
    for cls in (
        NullArgumentError,
        InvalidArgumentError,
        InvalidUtf8Error,
        PackageIOError,
        InvalidPackageError,
        BackendUnavailableError,
        BackendError,
        PanicError,
        BufferSizeError,
    )
}


def error_for_code(code: int, message: str) -> Error:
    """The exception for a C error code (plain :class:`Error` for a code newer than this
    binding)."""
    return _BY_CODE.get(code, Error)(message, code)
