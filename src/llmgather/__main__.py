"""`python -m llmgather` is the `llmgather` command."""

from llmgather.cli import main

main()
