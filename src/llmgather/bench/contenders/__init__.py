"""The contenders, one module each, written the way their users write them.

Every module has `main(prompts, *, base_url, max_tokens, ...)` returning the list of results
(exceptions or error Results count as failed items), or a dict of that list as `results` and
figures of its own to report beside it. `base_url` is the simulator's root.
"""
