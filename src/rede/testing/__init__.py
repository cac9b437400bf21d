"""Test helpers that users and the project's own suites share.

- :mod:`rede.testing.openai_server`: a real loopback HTTP server speaking the OpenAI chat
  completions protocol, deterministic, with latency, per-client counters and fault injection.
"""
