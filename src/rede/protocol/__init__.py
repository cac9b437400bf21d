"""The wire protocol: envelopes and their payloads (``messages``), topic names (``topics``)
and the byte encoding with size limits and signing (``codec``)."""
