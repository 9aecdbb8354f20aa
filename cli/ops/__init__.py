"""Operating a deployed stack: dead letters, redrive, replay and status on every backend.

`outputs` finds a stack's resources (from `pulumi stack output --json` or a file of it),
`aws`, `gcp` and `local` implement the same `Backend` operations over each platform, and
`commands` is the `switchyard dlq|replay|status` command line over them.
"""
