"""What runs agents: the agent runner that serves a specialist on the bus (``agent``) and the
live registry of agent cards kept by heartbeats (``registry``)."""
