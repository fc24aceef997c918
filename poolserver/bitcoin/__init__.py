"""Everything that faces Bitcoin: the node client (Bitcoin Core over JSON-RPC), the embedded
regtest chain that stands in for one, the template feed that turns their templates into jobs,
found-block submission and its durable records, and the payout wallets.

The share path reaches this package only through ``stratum.interfaces`` (``TemplateSource``,
``BlockSink``); ``poolserver.app`` wires the implementations in.
"""
