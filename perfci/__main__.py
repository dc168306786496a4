from perfci.cli.main import cli

cli()
