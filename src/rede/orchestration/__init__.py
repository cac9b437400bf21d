"""From a request to an answer: the dispatcher plans (``dispatcher``, ``plan``), the
orchestrator runs the plan on the bus (``orchestrator``), agreement tiers vote
(``agreement``), and every run is recorded (``run``, ``ledger``)."""
