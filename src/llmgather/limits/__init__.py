"""Client-side rate limits: the budgets a request spends before it is sent, and the limiter
that waits until they allow it."""
