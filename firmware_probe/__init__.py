"""Identifying ASIC miners through their management APIs (a later issue)."""
