"""Income reports for the authorized body and the tax office (a later issue)."""
