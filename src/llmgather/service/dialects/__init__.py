"""The wire formats the gateway serves at its front, one module each: how a client's request
is read (relayed as it is, or translated) and how its answer and errors are written."""
