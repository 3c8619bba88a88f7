"""llmgather: run many LLM API calls concurrently, at the provider's rate limit, losing nothing."""
