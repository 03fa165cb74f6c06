"""The run layer: the one place where sources, the engine and the sinks meet.

A command (``tlssniff/cli.py``, ``tlssniff/commands/``) parses its options and hands them here:

- :mod:`.session`: :class:`~.session.Session` (the limits, the sinks every verdict goes to, what
  the source counted) and the exit policy (warnings, errors, ``--fail-under``), once;
- :mod:`.offline`: the file sources (capture files one by one, ``--one-stream``, ``--jobs``
  pools and partitions, ``--dask``, tlssniff's own verdict files);
- :mod:`.live`: the live source (one capture loop, its drain at the stop included) and the
  ``live`` command's sinks (stream, dashboard, metrics, ``--write`` evidence, summary);
- :mod:`.workers`: ``live --workers N``, N processes fed by the kernel's flow hashing;
- :mod:`.outputs`: ``analyze``'s output formats, one registry line each (``OUTPUTS``);
- :mod:`.analyze` and :mod:`.report`: the ``analyze`` run and the ``report`` bundle.
"""
