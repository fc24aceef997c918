"""Case families: one module per family, each with a ``CASES`` list (``model.family``)."""

ORDER = ("framing", "protocol_abuse", "exhaustion", "credit", "identity", "control", "web")
