"""What other people's tests need, shipped with Rede.

- :mod:`rede.testing.bus_contract`: the bus contract as a conformance suite,
  ``await check_bus(make_bus)``, for any :class:`~rede.bus.Bus` implementation (Rede's memory
  and Redis buses pass it in Rede's own tests).
- :mod:`rede.testing.openai_server`: a real loopback HTTP server speaking the OpenAI chat
  completions protocol, deterministic, with latency, per-client counters and fault injection.
"""
