"""The agents themselves: LLM and tool specialists with their prompt templates
(``specialists``, ``prompts/``) and how results get a confidence (``confidence``)."""
