"""`python -m llmgather.bench` is `llmgather bench`."""

from llmgather.cli.bench import bench_command

bench_command(prog_name="llmgather bench")
