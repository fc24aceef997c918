"""Money math: PPLNS window and allocation, ledger rules, payment outbox logic.
Pure functions over plain dataclasses; integer satoshis only."""
