"""Income reports for the authorized body and the tax office (issue 13): pure report building
over plain data (``model``), formats (CSV/JSON/XML + XSD), manifest and Ed25519 signatures.
Reads the database only through the ``model.ReportSource`` Protocol that ``poolserver``
implements."""
