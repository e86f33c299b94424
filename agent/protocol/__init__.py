"""The pure protocol layer: bytes from a modem in, typed values out; no I/O, no asyncio.

Only names meant for the rest of the agent are re-exported here.
"""

from agent.protocol.concat import Assembler, Message, PendingMessage
from agent.protocol.pdu import (
    Concat,
    SmsDeliver,
    SmsStatusReport,
    SmsSubmit,
    decode,
    encode_deliver,
)

__all__ = [
    "Assembler",
    "Concat",
    "Message",
    "PendingMessage",
    "SmsDeliver",
    "SmsStatusReport",
    "SmsSubmit",
    "decode",
    "encode_deliver",
]
