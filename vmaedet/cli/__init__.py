"""Command line interface: ``vmaedet --help``."""
