"""The ``smartos-telemetry`` command and its subcommands, one module each."""
