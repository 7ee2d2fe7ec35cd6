"""One module per ``python -m backend`` subcommand (NAME, HELP, add_arguments, run)."""
