"""Evidence bundles for incident tickets (docs/report.md).

``write_bundle(out_dir, verdicts, aggregator, diagnostics, counters, inputs, argv, ...)``
writes summary.md, report.html, summary.json, handshakes.jsonl, evidence.pcapng and
provenance.json; ``fail_under(aggregator, rate, min_handshakes)`` (that is
:func:`tlssniff.analysis.aggregate.servers_under`) lists the servers that make
``--fail-under`` exit with status 3.
"""

from tlssniff.errors import ExitCode
from tlssniff.output.report.bundle import (
    Bundle,
    describe,
    fail_under,
    fail_under_lines,
    parse_rate,
    stats_label,
    write_bundle,
)

FAIL_UNDER_EXIT = ExitCode.BELOW_THRESHOLD

__all__ = ["Bundle", "FAIL_UNDER_EXIT", "describe", "fail_under", "fail_under_lines", "parse_rate", "stats_label",
           "write_bundle"]
