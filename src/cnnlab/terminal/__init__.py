"""What the `cnnlab` command prints: Rich tables of runs and the `explain` subcommands."""
