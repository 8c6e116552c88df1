"""The argument parser of every entry point: argparse whose refusals are one line on stderr,
"PROG: error: MESSAGE", and exit status 2 (argparse's own prints a usage block first)."""
import argparse


class OneLineParser(argparse.ArgumentParser):
    """argparse.ArgumentParser with one-line errors; --help is unchanged."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")
