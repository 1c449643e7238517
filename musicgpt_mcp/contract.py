"""Transitional: the wire contract moved to musicgpt/contract.py. The ledger (reworked on its own branch) still
imports `assumed_credits` from here; delete this module once ledger/ imports `..musicgpt.contract`."""

from .musicgpt.contract import assumed_credits

__all__ = ["assumed_credits"]
