"""`make bench` (`python -m bench [--quick]`): throughput, latency and fan-out figures, each against a baseline."""
