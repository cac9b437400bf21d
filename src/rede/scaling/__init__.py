"""More or fewer agents: load signals (``load``), the in-process spawner (``spawner``) and the
process supervisor behind ``rede up`` (``supervisor``)."""
