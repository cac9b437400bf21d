"""Which agent takes a call: the router and its strategies (``router``), auctions
(``auction``, handed a bus by orchestration) and spending caps (``budget``)."""
