"""The I/O under the provider adapters: one pooled HTTP session, and server-sent events."""
