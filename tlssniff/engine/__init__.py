"""The engine: frames in, verdicts out. The Analyzer (``pipeline.py``) drives the flow tables
and the carriers (TCP app in ``connection.py``), classifies with ``analysis.classify``, and
calls back with each verdict; ``parallel.py`` runs it over flow-hash partitions of one capture
or a pool of captures and merges exactly (``merge.py``), ``distributed.py`` does the same on a
Dask cluster. Pure analysis (verdicts, aggregation, findings) stays in ``analysis/``."""
