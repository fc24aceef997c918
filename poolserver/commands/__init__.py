"""One module per `poolserver` subcommand. Each exposes ``register(subparsers)``, which adds its
parser and sets ``func`` (``(args) -> int``) as the default."""
