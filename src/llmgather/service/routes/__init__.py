"""The service's routes, one module per concern; each reads what it needs from `app.state`."""
