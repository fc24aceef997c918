"""Case families: one module per family, each with a ``CASES`` list (``model.family``).

The web API's cases (issue 16) arrive as one more module here when the web API lands."""

ORDER = ("framing", "protocol_abuse", "exhaustion", "credit", "identity", "control")
