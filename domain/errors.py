"""A small hierarchy of domain errors.

Every refusal of a command is one of these, so the API and CLI can map each class to one
status code or exit code without inspecting messages. Messages say what to fix and never
quote confidential content (contact details or exchange text).
"""

from __future__ import annotations


class PocdirError(Exception):
    """Base class of every error the domain raises on purpose."""


class ValidationError(PocdirError, ValueError):
    """A command's input is malformed or breaks a rule (HTTP 422)."""


class InvalidIndicator(ValidationError):
    """An indicator of compromise is malformed (R7)."""


class TranslationRequired(ValidationError):
    """Text in a UN language other than English came without an English translation (R6)."""


class NotAMemberState(ValidationError):
    """The code is not that of one of the 193 UN member States (R1)."""


class NotPermitted(PocdirError):
    """The acting principal may not do this (HTTP 403), e.g. another State's entry (R15)."""


class NotFound(PocdirError):
    """No such entry, notification or consent, or not one the principal may know of (404)."""


class InvalidTransition(PocdirError):
    """The command is not allowed in the aggregate's current state (HTTP 409)."""


class AlreadyExists(InvalidTransition):
    """The aggregate already exists, e.g. a State registering twice."""


class ConcurrentChange(PocdirError):
    """Someone else changed the aggregate first; re-read and try again (HTTP 409/412)."""


class NotAuthenticated(PocdirError):
    """No credential, an unknown one, or a revoked one (HTTP 401)."""


class StaleVersion(ConcurrentChange):
    """The caller's version (HTTP ``If-Match``) is not the current one (HTTP 412)."""


class NotConfigured(PocdirError):
    """The server lacks a setting this command needs (a key file): the operator must set it."""


class EventTooLarge(ValidationError):
    """The event a command would record is, as stored (encrypted, with its metadata), larger
    than one entry of the record's tlog-tiles log can be (HTTP 413). Nothing is recorded; the
    message gives the size and the limit, never the content."""
