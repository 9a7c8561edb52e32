"""One module per ``edgemon-agent`` subcommand (see ``agent.__main__.COMMANDS``)."""
