"""The benchmark harness: `make bench` (python -m tests.bench); see tests/bench/README.md."""
