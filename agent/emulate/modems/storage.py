"""SMS storage of an emulated modem: fixed-size slots holding PDUs, like a SIM's EF_SMS.

Slots are numbered from 0 here; the modem adds its profile's index base (SIM800 counts
from 1, Quectel and Huawei from 0) when it talks to the host. A full storage refuses new
messages: the network keeps them until a slot frees, which is how "SIM memory full" stops
reception in the field.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

# <stat> of 27.005 3.1: what +CMGL/+CMGR print in PDU mode.
REC_UNREAD = 0
REC_READ = 1


@dataclass
class StoredSms:
    """One stored SMS-DELIVER: the PDU with its SMSC field, and its read status."""

    pdu: bytes
    status: int = REC_UNREAD

    @property
    def tpdu_length(self) -> int:
        """<length> of +CMGR/+CMGL/+CMT in PDU mode: octets after the SMSC field."""
        return len(self.pdu) - 1 - self.pdu[0]


class SmsStorage:
    """A memory ("SM", "ME") of ``capacity`` slots."""

    def __init__(self, name: str, capacity: int) -> None:
        self.name = name
        self.capacity = capacity
        self._slots: list[StoredSms | None] = [None] * capacity

    @property
    def used(self) -> int:
        return sum(slot is not None for slot in self._slots)

    @property
    def full(self) -> bool:
        return all(slot is not None for slot in self._slots)

    def store(self, pdu: bytes, status: int = REC_UNREAD) -> int | None:
        """Put ``pdu`` in the lowest free slot; its number, or None when full."""
        for slot, content in enumerate(self._slots):
            if content is None:
                self._slots[slot] = StoredSms(pdu, status)
                return slot
        return None

    def valid(self, slot: int) -> bool:
        return 0 <= slot < self.capacity

    def get(self, slot: int) -> StoredSms | None:
        return self._slots[slot]

    def delete(self, slot: int) -> None:
        self._slots[slot] = None

    def items(self) -> Iterator[tuple[int, StoredSms]]:
        for slot, content in enumerate(self._slots):
            if content is not None:
                yield slot, content

    def clear(self) -> None:
        self._slots = [None] * self.capacity


class CombinedStorage:
    """ "MT": a SIM and a modem memory seen as one, SIM slots first (27.005 "MT")."""

    def __init__(self, *parts: SmsStorage) -> None:
        self.name = "MT"
        self.parts = parts

    @property
    def capacity(self) -> int:
        return sum(part.capacity for part in self.parts)

    @property
    def used(self) -> int:
        return sum(part.used for part in self.parts)

    @property
    def full(self) -> bool:
        return all(part.full for part in self.parts)

    def _locate(self, slot: int) -> tuple[SmsStorage, int]:
        for part in self.parts:
            if slot < part.capacity:
                return part, slot
            slot -= part.capacity
        raise IndexError(slot)

    def store(self, pdu: bytes, status: int = REC_UNREAD) -> int | None:
        offset = 0
        for part in self.parts:
            slot = part.store(pdu, status)
            if slot is not None:
                return offset + slot
            offset += part.capacity
        return None

    def valid(self, slot: int) -> bool:
        return 0 <= slot < self.capacity

    def get(self, slot: int) -> StoredSms | None:
        part, local = self._locate(slot)
        return part.get(local)

    def delete(self, slot: int) -> None:
        part, local = self._locate(slot)
        part.delete(local)

    def items(self) -> Iterator[tuple[int, StoredSms]]:
        offset = 0
        for part in self.parts:
            for slot, content in part.items():
                yield offset + slot, content
            offset += part.capacity

    def clear(self) -> None:
        for part in self.parts:
            part.clear()


Memory = SmsStorage | CombinedStorage
