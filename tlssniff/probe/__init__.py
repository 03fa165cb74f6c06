"""``tlssniff probe``: make resumption happen on demand and measure it, then check the wire.

The layers follow the data's path, like the passive side:

- :mod:`~tlssniff.probe.target`: ``HOST[:PORT]`` parsing and resolution (one address per
  target, so every connection and the capture filter name exactly the targets given);
- :mod:`~tlssniff.probe.client`: one TLS connection (socket + memory BIOs, optional STARTTLS),
  its outcome as the client sees it, and errors that say whose fault they are;
- :mod:`~tlssniff.probe.engine`: the plan (per mechanism: issue, sequential, concurrent bursts,
  ages, node matrix) and its results;
- :mod:`~tlssniff.probe.selfcheck`: capture of the probe's own traffic with tcpdump, the passive
  analyzer run over it, client view against wire view;
- :mod:`~tlssniff.probe.report`: findings, the JSON document and the rich tables.
"""

from tlssniff.probe.client import MECHANISMS, ProbeFailure
from tlssniff.probe.engine import ProbeConfig, ProbeResult, run_probe

__all__ = ["MECHANISMS", "ProbeConfig", "ProbeFailure", "ProbeResult", "run_probe"]
