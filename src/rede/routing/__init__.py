"""Which agent takes a call: the router and its strategies (``router``), what it learns of
each agent (``stats``) and of finished runs (``feedback``), auctions (``auction``, handed a
bus by orchestration) and spending caps (``budget``)."""
