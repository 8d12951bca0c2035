"""`python -m lungforge` is the `lungforge` command."""

from lungforge.cli.main import run

if __name__ == "__main__":
    run()
