"""The implementations of the njtui subcommands, one module per command (`run`, `show`,
`runtimes`, `results`, `secrets`, `runtime`, `open`), with what they share: `output` (the
printers of executions and making untrusted text inert on a terminal) and `common` (exit
statuses, the usage error, picking a notebook's cells). `njtui.cli` only parses the command
line and dispatches here."""
