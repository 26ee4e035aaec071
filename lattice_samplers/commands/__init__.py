"""The command line, one module per subcommand: argv -> spec -> workflow -> print."""
