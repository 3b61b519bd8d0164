"""Jobs the CLI runs, each a plain function over the library: verify, bench, demo, doctor.

These sit above every stage (they may import any of them) and below :mod:`vmaedet.cli`, which
is the only place that knows command-line flags.
"""
