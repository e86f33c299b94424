"""Talking to modems: the serial transport, one AT session per port, the vendor profiles,
start-up and identification, the own-number recipes and the per-modem worker."""

from agent.modem.session import AtSession
from agent.modem.worker import ModemWorker, PduSink, WorkerCommand, WorkerSettings

__all__ = ["AtSession", "ModemWorker", "PduSink", "WorkerCommand", "WorkerSettings"]
