"""The command line: the typer app (main), one module per command group, and the output helpers only it uses."""
