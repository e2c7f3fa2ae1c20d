"""The application service: the one way commands reach the record.

Every command loads the aggregates it needs, checks the rules across them (for example that
both States of a notification are registered), and saves the new events in one atomic write.
Time comes from the injected clock and new ids from the injected id factory, so a seeded
simulation writes the same record every time.

``PocDirectory`` is composed of one class per area (``domain.commands``): the entries, the
exchanges, the credentials, the State keys, the review and the delivery of alerts; what they
share (loading, the one load-change-save helper, the atomic save) is
``domain.commands.base.RecordService``. How events are encoded, and decoded for the views, is
``domain.codec``.
"""

from __future__ import annotations

from domain.codec import CONTENT_TRANSCODINGS, WITHHELD, DateAsISO, WithheldContent
from domain.commands.credentials import CredentialCommands
from domain.commands.delivery import DeliveryCommands
from domain.commands.keys import KeyCommands
from domain.commands.review import ReviewCommands

__all__ = ["CONTENT_TRANSCODINGS", "WITHHELD", "DateAsISO", "PocDirectory", "WithheldContent"]


class PocDirectory(ReviewCommands, CredentialCommands, KeyCommands, DeliveryCommands):
    """pocdir's application service over the hash-chained record: every area's commands.

    (``ReviewCommands`` builds on the exchanges, which build on the entries: a need cites a
    notification, a notification needs both States' entries.)"""

    name = "pocdir"
