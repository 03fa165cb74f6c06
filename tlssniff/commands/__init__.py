"""Commands beyond ``analyze``: one module each, registered in :mod:`tlssniff.cli`.

Each module imports its heavy dependencies (matplotlib, the probe) inside its command
function, so ``tlssniff --help`` and ``tlssniff analyze`` stay fast.
"""
