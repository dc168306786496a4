from perfci.cli import cli

cli()
