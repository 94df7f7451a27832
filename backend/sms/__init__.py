"""SMS: the outbox (outbox.py) and the pluggable senders that deliver it (senders.py: log,
memory, file; http.py: Twilio, a webhook), chosen by `IVRS_SMS_SENDER` (config.py).

`MemorySender` keeps messages in the process, for tests and the demo:
`sender.last_code("91234567")` is the last code sent to that mobile.
"""

from backend.sms.config import SMS_SENDERS, SmsGateway, sender_for
from backend.sms.outbox import CODE_MASK, Delivery, Outgoing, deliver, deliver_one, queue
from backend.sms.senders import (
    FileSender,
    LogSender,
    MemorySender,
    NotAccepted,
    NotDelivered,
    Receipt,
    Refused,
    SentSms,
    SmsSender,
    Unknown,
    current_kind,
    sending,
)
from backend.sms.texts import bundle_text, code_text, e164, last4

__all__ = [
    "CODE_MASK",
    "SMS_SENDERS",
    "Delivery",
    "FileSender",
    "LogSender",
    "MemorySender",
    "NotAccepted",
    "NotDelivered",
    "Outgoing",
    "Receipt",
    "Refused",
    "SentSms",
    "SmsGateway",
    "SmsSender",
    "Unknown",
    "bundle_text",
    "code_text",
    "current_kind",
    "deliver",
    "deliver_one",
    "e164",
    "last4",
    "queue",
    "sender_for",
    "sending",
]
