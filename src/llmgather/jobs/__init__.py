"""Durable runs: an input file in, one committed result per input out, resumable after a stop."""
