"""The `switchyard` command line: the outermost layer.

`main` is the entry point (`switchyard ...`, `python -m cli ...`), `args` its argument
types, `tools` the synth/cost commands over the Pulumi program in `infra/`, `catalog` the
event-contract commands, and `ops` the operations on a deployed stack or the local db.
Nothing below (handlers, adapters, infra) imports this package: it may import all of them.
"""
