"""The contenders, one module each, written the way their users write them.

Every module has `main(prompts, *, base_url, max_tokens, ...)` returning the list of results
(exceptions or error Results count as failed items). `base_url` is the simulator's root.
"""
