"""Provider adapters: one sans-IO module per wire format, chosen through `registry`."""
